// Runs as the console shows them: every `trainDalle` workflow from Temporal visibility, with the live
// `progress` query while it runs and its result (or failure) once it closed. Closed runs never change, so
// their summaries, starts and timelines are kept; a running run's timeline is re-read only when its
// progress reports a new event.
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import {
  progressQuery,
  WORKFLOW_TYPE,
  type RunProgress,
  type TrainDalleResult,
  type TrainDalleWorkflow,
} from '../../contract/index.ts';
import type { CheckpointStore } from '../../store/index.ts';
import type { RunStatusName, RunSummary } from './api-types.ts';
import { readRunStart, readTimeline, type RunStart, type TimelineEntry } from './run-history.ts';
import { stageTotals } from './run-store.ts';

/** Workflow type of a run (task queue dalle-train). */
const RUN_WORKFLOW = WORKFLOW_TYPE.trainDalle;
/** Runs listed, newest first. */
export const MAX_RUNS = 200;
/** A query that no worker answers within this long leaves the run's live figures empty. */
const QUERY_DEADLINE_MS = 2500;

/** A run as read from Temporal (the API adds what the store holds). */
export interface RunRecord extends RunSummary {
  workflowRunId: string;
  start: RunStart;
  progress: RunProgress | null;
  result: TrainDalleResult | null;
  timeline: TimelineEntry[];
}

/** No `trainDalle` workflow has this id. */
export class RunNotFoundError extends Error {
  override name = 'RunNotFoundError';
  constructor(readonly runId: string) {
    super(`no run '${runId}'`);
  }
}

function statusName(info: ExecutionInfo): RunStatusName {
  const n = info.status.name;
  if (n === 'RUNNING' || n === 'CONTINUED_AS_NEW' || n === 'PAUSED') return 'running';
  if (n === 'COMPLETED') return 'completed';
  if (n === 'CANCELLED') return 'cancelled';
  if (n === 'TERMINATED') return 'terminated';
  if (n === 'TIMED_OUT') return 'timed-out';
  return 'failed';
}

/** What visibility and describe() both say about an execution. */
type ExecutionInfo = Pick<
  WorkflowExecutionInfo,
  'type' | 'workflowId' | 'runId' | 'status' | 'startTime' | 'closeTime'
>;

/** A failure and its causes, outermost first ("Child Workflow execution failed: Activity task failed: …"). */
function causes(e: unknown): string {
  const parts: string[] = [];
  for (let x = e; x instanceof Error && parts.length < 5; x = (x as { cause?: unknown }).cause)
    if (x.message && !parts.includes(x.message)) parts.push(x.message);
  return parts.join(': ');
}

const compression = (raw: number, sent: number) => (raw > 0 ? 1 - sent / raw : null);

interface Closed {
  result: TrainDalleResult | null;
  note: string | null;
}

export class RunReader {
  private readonly closed = new Map<string, Promise<Closed>>();
  private readonly starts = new Map<string, Promise<RunStart>>();
  private readonly timelines = new Map<string, { key: string; entries: Promise<TimelineEntry[]> }>();

  constructor(
    private readonly client: () => Promise<Client>,
    private readonly checkpoints: () => Promise<CheckpointStore>,
  ) {}

  /** Live compression of a running run: the finished stages' totals plus the current stage's stored steps. */
  private async liveCompression(runId: string, p: RunProgress): Promise<number | null> {
    let raw = p.bytesRaw;
    let sent = p.bytesSent;
    if ((p.stage === 'dvae' || p.stage === 'transformer') && p.checkpointStep > 0) {
      const t = await stageTotals(await this.checkpoints(), runId, p.stage, p.checkpointStep).catch(
        () => undefined,
      );
      raw += t?.bytesRaw ?? 0;
      sent += t?.bytesSent ?? 0;
    }
    return compression(raw, sent);
  }

  /** Newest first. */
  async list(): Promise<RunSummary[]> {
    const client = await this.client();
    const infos: WorkflowExecutionInfo[] = [];
    for await (const info of client.workflow.list({
      query: `WorkflowType = '${RUN_WORKFLOW}'`,
      pageSize: 100,
    })) {
      infos.push(info);
      if (infos.length >= MAX_RUNS) break;
    }
    infos.sort((a, b) => b.startTime.getTime() - a.startTime.getTime());
    return Promise.all(infos.map(async (info) => (await this.read(client, info)).summary));
  }

  async detail(runId: string): Promise<RunRecord> {
    const client = await this.client();
    const info = await client.workflow
      .getHandle(runId)
      .describe()
      .catch(() => undefined);
    if (!info || info.type !== RUN_WORKFLOW) throw new RunNotFoundError(runId);
    const { summary, progress, closed, start } = await this.read(client, info);
    const key = `${summary.status}:${progress?.restarts ?? ''}:${progress?.events.length ?? ''}:${progress?.events.at(-1) ?? ''}:${progress?.stage ?? ''}`;
    let t = this.timelines.get(info.runId);
    if (!t || t.key !== key) {
      t = { key, entries: readTimeline(client, runId, info.runId) };
      this.timelines.set(info.runId, t);
      t.entries.catch(() => this.timelines.delete(info.runId));
    }
    return {
      ...summary,
      workflowRunId: info.runId,
      start,
      progress,
      result: closed?.result ?? null,
      timeline: await t.entries,
    };
  }

  /** The run's spec and trace id (kept: they never change). */
  start(client: Client, info: ExecutionInfo): Promise<RunStart> {
    let p = this.starts.get(info.runId);
    if (!p) {
      p = readRunStart(client, info.workflowId, info.runId);
      p.catch(() => this.starts.delete(info.runId));
      this.starts.set(info.runId, p);
    }
    return p;
  }

  private closedState(client: Client, info: ExecutionInfo): Promise<Closed> {
    let p = this.closed.get(info.runId);
    if (!p) {
      const handle = client.workflow.getHandle<TrainDalleWorkflow>(info.workflowId, info.runId);
      p = handle.result().then(
        (result) => ({ result, note: null }),
        (e: Error) => ({ result: null, note: causes(e) }),
      );
      this.closed.set(info.runId, p);
    }
    return p;
  }

  private async read(client: Client, info: ExecutionInfo) {
    const status = statusName(info);
    const start = await this.start(client, info).catch((): RunStart => ({
      spec: null,
      traceId: null,
      startedAt: info.startTime.toISOString(),
    }));
    const base = {
      runId: info.workflowId,
      status,
      startedAt: info.startTime.toISOString(),
      closedAt: info.closeTime?.toISOString() ?? null,
      preset: start.spec?.preset ?? null,
    };
    if (status === 'running') {
      const handle = client.workflow.getHandle(info.workflowId, info.runId);
      let note: string | null = null;
      const progress = await client
        .withDeadline(Date.now() + QUERY_DEADLINE_MS, () => handle.query(progressQuery))
        .catch((e: Error) => {
          note = `no live figures: the progress query failed (${e.message}); is a worker running?`;
          return null;
        });
      const summary: RunSummary = {
        ...base,
        stage: progress?.stage ?? 'unknown',
        step: progress?.step ?? 0,
        totalSteps: progress?.totalSteps ?? 0,
        loss: progress?.loss ?? null,
        stepsPerSec: progress?.stepsPerSec ?? null,
        worldSize: progress?.worldSize ?? start.spec?.train.worldSize ?? null,
        restarts: progress?.restarts ?? 0,
        paused: progress?.paused ?? false,
        compressionRate: progress ? await this.liveCompression(info.workflowId, progress) : null,
        note,
      };
      return { summary, progress, closed: undefined, start };
    }
    const closed = await this.closedState(client, info);
    const r = closed.result;
    const summary: RunSummary = {
      ...base,
      stage: r ? 'done' : status,
      step: r?.transformer.step ?? 0,
      totalSteps: r ? r.transformer.step : 0,
      loss: r?.transformer.loss ?? null,
      stepsPerSec: null,
      worldSize: start.spec?.train.worldSize ?? null,
      restarts: r?.restarts ?? 0,
      paused: false,
      compressionRate: r
        ? compression(r.dvae.bytesRaw + r.transformer.bytesRaw, r.dvae.bytesSent + r.transformer.bytesSent)
        : null,
      note: closed.note,
    };
    return { summary, progress: r?.progress ?? null, closed, start };
  }
}
