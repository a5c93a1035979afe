// A run's progress as one object, for `dalle status`, `dalle train`, the demo and tests. The workflow knows
// the run's shape (stage, checkpoints, restarts, events) and answers query `progress`; step-level figures
// (step, loss, throughput, ranks still awaited) come from rank 0's record in the runs KV bucket, rewritten
// every few seconds, so that they never accumulate in a workflow's history.
import type { Client } from '@temporalio/client';
import type { CheckpointStore } from '../../store/index.ts';
import { progressQuery, type RunProgress } from '../../contract/index.ts';

const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** `p` with the live record laid over it, when the record belongs to the stage in flight and to the
 *  current launch of it (a record written before the last relaunch is stale). */
export function withLiveProgress(p: RunProgress, live: Record<string, unknown> | undefined): RunProgress {
  if (!live || live.stage !== p.stage) return p;
  const resumedFrom = p.lastResume?.stage === p.stage ? p.lastResume.fromStep : undefined;
  if (resumedFrom !== undefined && (num(live.fromStep) ?? -1) < resumedFrom) return p;
  const waiting = Array.isArray(live.waitingFor) ? live.waitingFor.filter((r) => typeof r === 'number') : [];
  return {
    ...p,
    step: Math.max(p.step, num(live.step) ?? 0),
    totalSteps: num(live.totalSteps) ?? p.totalSteps,
    loss: num(live.loss) ?? p.loss,
    lr: num(live.lr) ?? p.lr,
    tau: num(live.tau) ?? p.tau,
    beta: num(live.beta) ?? p.beta,
    stepsPerSec: num(live.stepsPerSec) ?? p.stepsPerSec,
    checkpointStep: Math.max(p.checkpointStep, num(live.checkpointStep) ?? 0),
    worldSize: num(live.worldSize) ?? p.worldSize,
    ...(waiting.length ? { waitingFor: waiting } : {}),
  };
}

/** How long a progress query may wait. A query is answered by a worker (a closed run's by replaying its
 *  history): with none polling, the server holds it until the RPC's own deadline, which made `dalle status`
 *  of a finished run take ~35 s when no worker was up. */
const QUERY_DEADLINE_MS = 4000;

/** The run's progress (undefined when the workflow does not answer in time: not started, or no worker). */
export async function runProgress(
  client: Client,
  checkpoints: CheckpointStore | undefined,
  runId: string,
): Promise<RunProgress | undefined> {
  const handle = client.workflow.getHandle(runId);
  const p = await client
    .withDeadline(Date.now() + QUERY_DEADLINE_MS, () => handle.query(progressQuery))
    .catch(() => undefined);
  if (!p) return undefined;
  return withLiveProgress(p, await checkpoints?.progress(runId));
}

/** The runs bucket, read-only, for a CLI command: `checkpoints` is undefined when no run stored anything
 *  yet (the bucket does not exist) — or when NATS is unreachable and `optional` is set. */
export async function openRunRecords(
  optional = false,
): Promise<{ checkpoints: CheckpointStore | undefined; close(): Promise<void> }> {
  const { connectNats } = await import('../../security/nats.ts');
  const { MissingBucketError, openStores } = await import('../../store/index.ts');
  let nc: Awaited<ReturnType<typeof connectNats>>;
  try {
    nc = await connectNats({ timeout: 3000, reconnect: false, name: 'dalle-cli' });
  } catch (e) {
    if (optional) return { checkpoints: undefined, close: async () => undefined };
    throw e;
  }
  const stores = await openStores({ nc }, { readOnly: true }).catch((e: Error) => {
    if (e instanceof MissingBucketError) return undefined;
    throw e;
  });
  return { checkpoints: stores?.checkpoints, close: () => nc.close() };
}
