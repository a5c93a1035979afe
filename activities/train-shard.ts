// Rank r of W for one segment: load the committed checkpoint, join the NATS group, run steps
// (compute → PowerSGD all-reduce → apply), and store a checkpoint every `checkpointEvery` steps
// (checkpoint-commit.ts). At each checkpoint rank 0 asks whether the world size should change (resize.ts);
// if so every rank stops there and the stage relaunches with the new size from that checkpoint. The
// heartbeat starts first (before checkpoint load, dataset open and group join) and keeps flowing through
// long synchronous steps (heartbeat.ts). Rank 0 writes live progress to the run's KV record, not into
// workflow history. Cancellation stops at a step boundary.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import type { NatsConnection } from 'nats';
import { specHash } from '../config/index.ts';
import { joinGroup, PeerLostError, PowerSgd, type Group } from '../collective/index.ts';
import { initTfBackend, type Trainer } from '../model/index.ts';
import { rankConnection } from '../security/run-credentials.ts';
import { CheckpointStore, type CheckpointManifest, type RunCurves } from '../store/index.ts';
import { recordTrainStep } from '../telemetry/index.ts';
import { stageBatches, type StageBatchSource } from './batches.ts';
import { saveCheckpoint } from './checkpoint-commit.ts';
import { loadCurves, rank0Extras } from './checkpoint-extras.ts';
import { asNonRetryable } from './errors.ts';
import { startHeartbeat, type Heartbeat } from './heartbeat.ts';
import type { HeartbeatThread } from './heartbeat-thread.ts';
import type { QualityProbe } from '../eval/index.ts';
import { createQualityProbe, measureQuality } from './quality.ts';
import { FlatRuntime, type RankRuntime } from './rank-runtime.ts';
import { rankGradients } from './rank-gradients.ts';
import { restoreRankState } from './rank-state.ts';
import { resizeDecision } from './resize.ts';
import { openShardedRuntime } from './sharded-runtime.ts';
import { createStageTrainer } from './stage-trainer.ts';
import {
  stagePowerSgd,
  progressSignal,
  stageBatchSize,
  stageSteps,
  type JoinShortfall,
  type ProgressReport,
  type TrainShardInput,
  type TrainShardResult,
} from '../contract/index.ts';

export interface TrainShardDeps {
  nc: NatsConnection;
  checkpoints: CheckpointStore;
  /** Temporal client of the worker: rank 0 signals each checkpoint's quality point to the run's workflow
   *  (one signal per checkpoint; step-level progress goes to the run's KV record) and asks the stage for
   *  its world size. */
  client: Client;
  /** The worker's helper thread that heartbeats ranks through long synchronous steps. */
  heartbeats: HeartbeatThread;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** The machine this worker is on. */
  hostId: string;
  /** The task queue this worker polls (whose idle slots an elastic run may grow onto). */
  taskQueue: string;
}

/** How often rank 0 rewrites the run's progress record. */
const PROGRESS_EVERY_MS = 2000;

/** Fault injection for failure tests: `DALLE_TEST_SIGKILL_AT=<stage>:<step>` makes this worker process
 *  SIGKILL itself when one of its ranks reaches that step, mid-segment, exactly as a dying machine would. */
const sigkillAt = process.env.DALLE_TEST_SIGKILL_AT;
/** `DALLE_TEST_BLOCK_AT=<stage>:<step>:<seconds>`: the rank keeps its thread busy (no await) that long at
 *  that step, as one huge synchronous step would. */
const blockAt = process.env.DALLE_TEST_BLOCK_AT;

/** The group of this segment launch. Waiting for peers is not a failure of the run: when the ranks that
 *  never arrived are all that went wrong, the failure says so (type `PeersAbsent`, details a JoinShortfall)
 *  and the workflow waits and relaunches without spending a restart, or an elastic run shrinks to the
 *  ranks that did arrive. A cancellation ends the wait at once. */
async function joinSegment(
  deps: TrainShardDeps,
  input: TrainShardInput,
  nc: NatsConnection,
  cancelled: AbortSignal,
  onWaiting: (missing: number[]) => void,
): Promise<Group> {
  const { runId, rank, worldSize, spec } = input;
  let rejected = 0;
  const joining = joinGroup({
    nc,
    runId,
    groupId: input.groupId,
    rank,
    worldSize,
    timeoutMs: spec.train.collectiveTimeout * 1000,
    joinTimeoutMs: spec.train.joinTimeout * 1000,
    onWaiting,
    // Forged, stale or misaddressed messages are dropped by the group; say so (sparingly: a flood of
    // them must not become a flood of log lines).
    onRejected: (r) => {
      rejected++;
      if (rejected <= 5 || rejected % 1000 === 0)
        deps.log(`rank ${rank}: rejected a collective message (${rejected} so far)`, { ...r });
    },
  });
  try {
    const onCancel = new Promise<never>((_, reject) => {
      if (cancelled.aborted) reject(cancelled.reason);
      cancelled.addEventListener('abort', () => reject(cancelled.reason));
    });
    return await Promise.race([joining, onCancel]);
  } catch (e) {
    void joining.then(
      (g) => g.close(),
      () => undefined,
    );
    if (e instanceof PeerLostError && e.op === 'join') {
      const details: JoinShortfall = { op: 'join', missing: e.ranks };
      throw ApplicationFailure.create({
        message: `waiting for rank(s) ${e.ranks.join(', ')}: ${e.reason} (no worker free for them yet?)`,
        type: 'PeersAbsent',
        details: [details],
        cause: e,
      });
    }
    throw e;
  }
}

/** The world group and the layout's runtime, with this rank's state restored from the checkpoint, and the
 *  manifest the segment starts from (undefined at step 0). */
async function openLayout(
  deps: TrainShardDeps,
  input: TrainShardInput,
  trainer: Trainer<any>,
  backend: string,
  join: () => Promise<Group>,
): Promise<{ group: Group; runtime: RankRuntime; manifest?: CheckpointManifest }> {
  const { runId, stage, spec, worldSize, fromStep } = input;
  const mismatch = (was: Record<string, unknown> | undefined) => {
    if (was?.backend !== undefined && was.backend !== backend)
      deps.log(
        `resuming a checkpoint written on the ${String(was.backend)} backend on ${backend}: training continues correctly, but not bit-identically to a run that stayed on one backend`,
      );
  };
  if (spec.train.parameterSharding === 'host') {
    const manifest = fromStep > 0 ? await deps.checkpoints.manifestAt(runId, stage, fromStep) : undefined;
    if (fromStep > 0 && !manifest)
      throw new Error(`committed checkpoint ${runId}/${stage}/${fromStep} has no manifest`);
    if (manifest) {
      CheckpointStore.checkSpec(manifest, specHash(spec)); // the same run id under another spec: fatal
      trainer.loadState(await deps.checkpoints.loadPart(manifest, 'params'));
    }
    mismatch(manifest?.meta);
    const group = await join();
    try {
      return { group, runtime: await openShardedRuntime(deps, input, group, trainer, manifest), manifest };
    } catch (e) {
      await group.close().catch(() => undefined);
      throw e;
    }
  }
  const psgd = new PowerSgd(trainer.paramSpecs(), stagePowerSgd(spec, input.stage), {
    rank: input.rank,
    worldSize,
    seed: spec.train.seed,
  });
  const restored = await restoreRankState(deps.checkpoints, input, trainer, psgd);
  if (restored.powersgd === 'resharded')
    deps.log(
      `world size ${String(restored.manifest?.meta.worldSize)} → ${worldSize}: PowerSGD error buffers re-sharded`,
    );
  mismatch(restored.manifest?.meta);
  const group = await join();
  const runtime = new FlatRuntime(deps.checkpoints, input, trainer, psgd, group);
  return { group, runtime, manifest: restored.manifest };
}

export async function trainShard(deps: TrainShardDeps, input: TrainShardInput): Promise<TrainShardResult> {
  const ctx = Context.current();
  const { stage, spec, rank, worldSize, fromStep } = input;
  const globalBatch = stageBatchSize(spec, stage);
  if (worldSize > globalBatch) {
    throw ApplicationFailure.nonRetryable(
      `worldSize ${worldSize} exceeds the ${stage} stage's global batch ${globalBatch}: a rank would get no sample`,
      'ConfigError',
    );
  }
  // First thing: the heartbeat. Loading a checkpoint, opening a dataset and waiting for peers all take time.
  const hb = startHeartbeat(
    ctx,
    deps,
    {
      intervalMs: Math.max(500, (spec.train.heartbeatTimeout * 1000) / 4),
      stallMs: spec.train.stepTimeout * 1000,
      log: (m) => deps.log(`rank ${rank}: ${m}`),
    },
    { step: fromStep, checkpointStep: fromStep },
  );
  try {
    const result = await runShard(deps, input, hb);
    await hb.settle({ result });
    return result;
  } catch (e) {
    await hb
      .settle({ error: asNonRetryable(e) })
      .catch((err: unknown) => deps.log(`rank ${rank}: outcome not reported`, { error: String(err) }));
    throw e;
  } finally {
    await hb.close();
  }
}

/** 1–3 of a rank's segment, under its heartbeat. */
async function runShard(
  deps: TrainShardDeps,
  input: TrainShardInput,
  hb: Heartbeat,
): Promise<TrainShardResult> {
  const { runId, stage, spec, rank, worldSize } = input;
  // Rank 0 reports steps; any rank that waits for peers says so (rank 0 may be the one nobody runs yet).
  const progress = progressReporter(deps, input);
  const sharded = spec.train.parameterSharding === 'host';
  let trainer: Trainer<any> | undefined;
  let link: Awaited<ReturnType<typeof rankConnection>> | undefined;
  let opened: { group: Group; runtime: RankRuntime; manifest?: CheckpointManifest } | undefined;
  let probe: QualityProbe | undefined;
  try {
    // 1. State: model (+ optimizer, or this rank's shard of it) from the committed checkpoint or the seed.
    const backend = await initTfBackend();
    trainer = await createStageTrainer(stage, spec, worldSize, { optimizer: !sharded });
    const source = await stageBatches(stage, spec, deps.checkpoints, runId);
    // Rank 0 measures quality at each checkpoint, from the EMA weights (in the sharded layout gathered
    // from host 0's optimizer shards at the checkpoint). Built before joining: its set-up (validation
    // images through the dVAE) must not hold up the other ranks.
    probe = rank === 0 ? await createQualityProbe(deps, stage, spec, runId) : undefined;
    // 2. The group (on a secured cluster over a connection confined to this run's subjects).
    link = await rankConnection(deps.nc, runId);
    const nc = link.nc;
    const join = () => joinSegment(deps, input, nc, hb.signal, (missing) => progress.waiting(missing));
    opened = await openLayout({ ...deps, nc }, input, trainer, backend, join);
    const { group, runtime } = opened;
    const curves =
      rank === 0 ? await loadCurves(deps.checkpoints, opened.manifest, input, deps.log) : undefined;
    // A cancelled rank stops waiting at once: closing the group rejects a pending collective operation.
    const onAbort = () => void Promise.all([group.close(), runtime.close()]).catch(() => undefined);
    hb.signal.addEventListener('abort', onAbort);
    try {
      return await runSteps(deps, input, {
        trainer,
        source,
        runtime,
        group,
        hb,
        progress,
        backend,
        curves,
        probe,
      });
    } finally {
      hb.signal.removeEventListener('abort', onAbort);
    }
  } finally {
    await opened?.runtime.close().catch(() => undefined);
    await opened?.group.close().catch(() => undefined);
    await link?.close();
    probe?.dispose();
    trainer?.dispose();
  }
}

interface Running {
  trainer: Trainer<any>;
  source: StageBatchSource;
  runtime: RankRuntime;
  group: Group;
  hb: Heartbeat;
  progress: ReturnType<typeof progressReporter>;
  backend: string;
  /** Rank 0's curves of the stage. */
  curves: RunCurves | undefined;
  probe: QualityProbe | undefined;
}

/** 3. Steps from fromStep until toStep, a resize at a checkpoint, or cancellation. */
async function runSteps(deps: TrainShardDeps, input: TrainShardInput, s: Running): Promise<TrainShardResult> {
  const cancelled = s.hb.signal;
  const { runId, stage, spec, rank, worldSize, fromStep, toStep } = input;
  const t0 = Date.now();
  const stats = { loss: NaN, bytesRaw: 0, bytesSent: 0, skippedSteps: 0, stepMs: 0, exposedCommMs: 0 };
  let losses: number[] = [];
  let resizeTo = 0;
  let last = { step: fromStep, checkpointStep: fromStep };
  let ema: Float32Array[] | undefined; // rank 0's, at a checkpoint
  for (let step = fromStep; step < toStep && !resizeTo; step++) {
    if (cancelled.aborted) break;
    if (sigkillAt === `${stage}:${step}`) process.kill(process.pid, 'SIGKILL');
    busyAt(stage, step);
    // One step: compute (this rank's weighted share) → compress + all-reduce (the loss rides along) → apply.
    const stepStart = performance.now();
    const g = await rankGradients(s.trainer, s.source, spec, step, rank, worldSize, s.group);
    const r = await s.runtime.step(g.grads, step, g.loss);
    stats.stepMs += performance.now() - stepStart;
    stats.exposedCommMs += r.exposedCommMs;
    stats.loss = r.loss;
    const metrics = { ...g.metrics, ...r.metrics };
    if (r.skipped) stats.skippedSteps++;
    stats.bytesRaw += r.bytesRaw;
    stats.bytesSent += r.bytesSent;
    losses.push(stats.loss);

    const done = step + 1;
    s.curves?.record(done, {
      ...metrics,
      loss: stats.loss,
      seconds: (performance.now() - stepStart) / 1000,
      bytesRaw: r.bytesRaw,
      bytesSent: r.bytesSent,
    });
    if (done % spec.train.checkpointEvery === 0 || done === toStep) {
      const ask = rank === 0 ? await resizeDecision(deps, input, s.runtime.growthUnit()) : 0;
      const facts = { step: done, loss: stats.loss, losses, backend: s.backend, resizeTo: ask };
      ema = await s.runtime.gatherEma(done);
      const { curves } = s;
      const extras =
        curves && ema && (() => rank0Extras(deps.checkpoints, input, done, ema!, curves, deps.log));
      resizeTo = await saveCheckpoint(deps.checkpoints, input, s.runtime, s.group, facts, extras);
      losses = [];
      last = { step: done, checkpointStep: done };
      if (resizeTo && rank === 0) deps.log(`${stage}: world size ${worldSize} → ${resizeTo} at step ${done}`);
    } else last = { step: done, checkpointStep: last.checkpointStep };
    const stepsPerSec = (done - fromStep) / ((Date.now() - t0) / 1000);
    const report = {
      step: done,
      loss: stats.loss,
      lr: metrics.lr ?? NaN,
      tau: metrics.tau,
      beta: metrics.beta,
      stepsPerSec,
      bytesRaw: stats.bytesRaw,
      bytesSent: stats.bytesSent,
      checkpointStep: last.checkpointStep,
    };
    if (s.probe && ema && last.checkpointStep === done)
      await reportQuality(deps, input, s.probe, ema, report);
    ema = undefined;
    s.hb.beat(last);
    if (rank !== 0) continue;
    // Loss, steps/s, compression rate gauges (global figures: one rank reports them).
    const { bytesRaw, bytesSent } = r;
    recordTrainStep({ runId, stage, loss: stats.loss, stepsPerSec, bytesRaw, bytesSent });
    await s.progress.step(report, done === toStep || resizeTo > 0);
  }
  if (cancelled.aborted) throw cancelled.reason ?? new Error('cancelled');
  return {
    rank,
    hostId: deps.hostId,
    step: last.step,
    checkpointStep: last.checkpointStep,
    stepsPerSec: Math.max(1, last.step - fromStep) / ((Date.now() - t0) / 1000),
    ...stats, // loss, bytes, skipped steps, step and exposed communication ms
    ...(resizeTo ? { resizeTo } : {}),
  };
}

/** Rank 0's quality point of checkpoint `r.step`, signalled once to the run's workflow, which keeps the run's
 *  list of points (bounded, and carried when it continues as new). One signal per checkpoint, so a long run's
 *  history grows with its checkpoints, not its steps. A failed measurement or signal costs only the point. */
async function reportQuality(
  deps: TrainShardDeps,
  input: TrainShardInput,
  probe: QualityProbe,
  ema: Float32Array[],
  r: Omit<ProgressReport, 'stage' | 'totalSteps' | 'worldSize' | 'quality'>,
): Promise<void> {
  const quality = await measureQuality(deps, probe, input, r.step, ema);
  if (!quality) return;
  const { stage, spec, worldSize } = input;
  await deps.client.workflow
    .getHandle(input.progressWorkflowId)
    .signal(progressSignal, { ...r, stage, totalSteps: stageSteps(spec, stage), worldSize, quality })
    .catch((e: unknown) => deps.log('quality signal failed', { error: String(e) }));
}

/** Fault injection (DALLE_TEST_BLOCK_AT): a synchronous stretch with no await, like one enormous step. */
function busyAt(stage: string, step: number): void {
  const [st, at, seconds] = blockAt?.split(':') ?? [];
  if (st !== stage || Number(at) !== step) return;
  const until = Date.now() + Number(seconds) * 1000;
  while (Date.now() < until) {
    // busy: the event loop, and so every in-thread timer, is stopped
  }
}

/** Rank 0's progress: the run's KV record (`<run>.progress`), rewritten every few seconds and at the end
 *  of the segment (its last step, or the checkpoint where it stops for a new world size); while the group
 *  waits for peers it says for which ranks. Never fails a step. */
function progressReporter(deps: TrainShardDeps, input: TrainShardInput) {
  const { runId, stage, worldSize, spec } = input;
  const total = stageSteps(spec, stage);
  let last = 0;
  const put = (r: Record<string, unknown>) =>
    deps.checkpoints
      .putProgress(runId, { stage, totalSteps: total, worldSize, fromStep: input.fromStep, ...r })
      .catch((e: unknown) => deps.log('progress record not written', { error: String(e) }));
  return {
    waiting(missing: number[]): void {
      if (Date.now() - last < PROGRESS_EVERY_MS) return;
      last = Date.now();
      void put({ step: input.fromStep, checkpointStep: input.fromStep, waitingFor: missing });
    },
    async step(r: Omit<ProgressReport, 'stage' | 'totalSteps' | 'worldSize'>, final: boolean): Promise<void> {
      if (!final && Date.now() - last < PROGRESS_EVERY_MS) return;
      last = Date.now();
      await put({ ...r });
    },
  };
}
