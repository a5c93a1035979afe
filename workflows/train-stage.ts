// One training stage: a loop of segments. A segment = W rank activities from the last committed checkpoint.
// Any rank failing (dead worker: heartbeat timeout; lost peer: PeerLostError) cancels the others and the
// segment is relaunched from the last committed checkpoint with a new group id. A sharded segment's ranks
// are placed on their hosts' task queues first (segment-ranks.ts). A segment whose ranks only
// waited for peers that never started (no worker free: PeersAbsent) is relaunched too, but that is waiting,
// not failing: it spends no restart. History stays bounded: continue-as-new when Temporal suggests it, and
// the root hears only of restarts, resumes and fallbacks (checkpoints and progress are in the runs bucket).
import {
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  isCancellation,
  log,
  patched,
  proxySinks,
  setHandler,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import {
  clampWorldSize,
  pauseSignal,
  resumeSignal,
  setWorldSizeSignal,
  stageBatchSize,
  stageEventSignal,
  stageSteps,
  worldSizeAfterShortfall,
  worldSizeQuery,
  type JoinShortfall,
  type ResolvedCheckpoint,
  type StageEvent,
  type TrainShardResult,
  type TrainStageInput,
  type TrainStageResult,
} from '../contract/index.ts';
import type { DalleWorkflowSinks } from '../telemetry/index.ts';
import { utilityActivities } from './activities.ts';
import { launchRanks, placeSegment } from './segment-ranks.ts';

/** Each segment's committed checkpoint used to be signalled to the root; clients read it from the runs
 *  bucket now (recorded histories from before replay with the signal). */
const CHECKPOINTS_IN_KV = 'checkpoints-in-kv';

/** Failures that a relaunch cannot fix (bad config, missing dataset) end the stage at once. */
function nonRetryable(err: unknown): ApplicationFailure | undefined {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return cause instanceof ApplicationFailure && cause.nonRetryable ? cause : undefined;
}

/** The segment failed only because ranks never arrived (trainShard's PeersAbsent): nobody ran them yet.
 *  Returns how many never arrived (0: some other failure). */
function peersAbsent(err: unknown): number {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (!(cause instanceof ApplicationFailure) || cause.type !== 'PeersAbsent') return 0;
  const d = cause.details?.[0] as Partial<JoinShortfall> | undefined;
  return Array.isArray(d?.missing) && d.missing.length > 0 ? d.missing.length : 1;
}

function describe(err: unknown): string {
  let e: unknown = err;
  const parts: string[] = [];
  while (e instanceof Error && parts.length < 4) {
    parts.push(e.message);
    e = (e as { cause?: unknown }).cause;
  }
  return parts.filter(Boolean).join(': ');
}

/** What a stage carries from segment to segment (the first four across continue-as-new too). */
interface StageState {
  restarts: number;
  groupSeq: number;
  paused: boolean;
  worldSize: number;
  /** Rank 0's result of the last completed segment. */
  last?: TrainShardResult;
  totals: { bytesRaw: number; bytesSent: number; stepMs: number; exposedCommMs: number };
  /** The last segment failed: the next one resumes (and says from where). */
  failed: boolean;
  /** Relaunches in a row that only waited for absent peers (their backoff grows). */
  waits: number;
}

type Tell = (e: Omit<StageEvent, 'stage'>) => Promise<void>;

export async function trainStage(input: TrainStageInput): Promise<TrainStageResult> {
  const { runId, stage, spec } = input;
  const s: StageState = {
    restarts: input.restarts ?? 0,
    groupSeq: input.groupSeq ?? 0,
    paused: input.paused ?? false,
    // The rerank stage's own global batch may be smaller than the size an elastic run grew to before it:
    // such a size is moved into the stage's bounds (for the other stages this is the identity).
    worldSize: clampWorldSize(spec, input.worldSize, stage) ?? input.worldSize,
    totals: { bytesRaw: 0, bytesSent: 0, stepMs: 0, exposedCommMs: 0 },
    failed: false,
    waits: 0,
  };
  const parent = getExternalWorkflowHandle(input.parentId);
  const tell: Tell = (e) => parent.signal(stageEventSignal, { stage, ...e });
  handleSignals(input, s);
  const total = stageSteps(spec, stage);
  for (;;) {
    if (s.paused) await condition(() => !s.paused);
    const ck = await utilityActivities.resolveCheckpoint({ runId, stage, spec });
    for (const f of ck.fallbacks) await tell({ message: `checkpoint fallback: ${f}` });
    if (ck.step >= total) {
      return { stage, step: ck.step, loss: s.last?.loss ?? NaN, restarts: s.restarts, ...s.totals };
    }
    if (workflowInfo().continueAsNewSuggested) {
      const { restarts, groupSeq, paused, worldSize } = s;
      await continueAsNew<typeof trainStage>({ ...input, restarts, groupSeq, paused, worldSize });
    }
    await runSegment(input, s, ck, tell);
  }
}

/** pause / resume / setWorldSize, and the `worldSize` query rank 0 asks at each checkpoint. */
function handleSignals(input: TrainStageInput, s: StageState): void {
  const { spec, stage } = input;
  setHandler(pauseSignal, () => void (s.paused = true));
  setHandler(resumeSignal, () => void (s.paused = false));
  setHandler(setWorldSizeSignal, (w) => {
    // Validated by the CLI; a bad value here is ignored rather than failing a long run, and one outside
    // the stage's bounds (its global batch, train.elastic) is moved into them.
    const next = clampWorldSize(spec, w, stage);
    if (next !== undefined) s.worldSize = next;
    else log.warn('ignoring setWorldSize', { w, batchSize: stageBatchSize(spec, stage) });
  });
  // Rank 0 asks at each checkpoint and ends the segment there when this differs from its size.
  setHandler(worldSizeQuery, () => s.worldSize);
}

/** One segment from checkpoint `ck`: W rank activities, then what their results (or failure) mean. */
async function runSegment(input: TrainStageInput, s: StageState, ck: ResolvedCheckpoint, tell: Tell) {
  const { runId, stage, spec } = input;
  const groupId = `${stage}-g${s.groupSeq++}`;
  if (s.failed) {
    await tell({
      resumedFrom: ck.step,
      message: `${stage} resumes from checkpoint ${ck.step} as group ${groupId}`,
    });
    s.failed = false;
  }
  const toStep = Math.min(ck.step + spec.train.segmentSteps, stageSteps(spec, stage));
  const launched = s.worldSize;
  const placement = await placeSegment(input, launched);
  const shard = {
    runId,
    stage,
    spec,
    worldSize: launched,
    groupId,
    fromStep: ck.step,
    toStep,
    progressWorkflowId: input.parentId,
  };
  let shards: Promise<TrainShardResult>[] = [];
  const scope = new CancellationScope();
  const all = scope.run(() => {
    shards = launchRanks(input, shard, placement, tell);
    return Promise.all(shards);
  });
  try {
    await segmentDone(input, s, await all, launched, tell);
  } catch (err) {
    // The run itself being cancelled is not a failed segment.
    if (isCancellation(err) && CancellationScope.current().consideredCancelled) throw err;
    scope.cancel();
    await Promise.allSettled(shards);
    await segmentFailed(input, s, err, groupId, tell);
  }
}

/** A segment that ran to its end (or to a checkpoint where rank 0 asked for a new size). */
async function segmentDone(
  input: TrainStageInput,
  s: StageState,
  results: TrainShardResult[],
  launched: number,
  tell: Tell,
): Promise<void> {
  const { spec, stage } = input;
  const last = results[0]!;
  s.last = last;
  for (const r of results) {
    s.totals.bytesRaw += r.bytesRaw;
    s.totals.bytesSent += r.bytesSent;
    s.totals.stepMs += r.stepMs ?? 0; // absent in results recorded before the field existed
    s.totals.exposedCommMs += r.exposedCommMs ?? 0;
  }
  // Rank 0 stopped the segment for a new size: the one setWorldSize asked for (already in worldSize,
  // which a later signal may have changed again: it wins), or idle workers an elastic run adopts.
  const resizeTo = last.resizeTo;
  if (resizeTo !== undefined && resizeTo !== launched && clampWorldSize(spec, resizeTo, stage) === resizeTo) {
    if (s.worldSize === launched) s.worldSize = resizeTo;
    await tell({
      worldSize: s.worldSize,
      message: `${stage}: world size ${launched} → ${resizeTo} at checkpoint ${last.step}`,
    });
  }
  s.waits = 0;
  if (!patched(CHECKPOINTS_IN_KV)) await tell({ checkpointStep: last.checkpointStep });
}

/** A failed segment: fatal, only waiting for absent peers (relaunch, or an elastic run shrinks), or a
 *  restart from the last committed checkpoint after a backoff. */
async function segmentFailed(
  input: TrainStageInput,
  s: StageState,
  err: unknown,
  groupId: string,
  tell: Tell,
): Promise<void> {
  const { runId, stage, spec } = input;
  const fatal = nonRetryable(err);
  if (fatal) throw fatal;
  const absent = peersAbsent(err);
  if (absent > 0) {
    // An elastic run goes on with the ranks that came (never below train.elastic.min), spending nothing.
    const shrunk = worldSizeAfterShortfall(spec, s.worldSize, absent);
    if (shrunk !== s.worldSize) {
      await tell({
        worldSize: shrunk,
        message: `${stage}: world size ${s.worldSize} → ${shrunk} (elastic: ${s.worldSize - shrunk} rank(s) found no worker within joinTimeout)`,
      });
      s.worldSize = shrunk;
      s.waits = 0;
      return;
    }
    // Waiting for a worker (a slow replacement, or none free yet): relaunch as it is, spend nothing.
    // Status shows whom the ranks wait for (rank 0's progress record); the root hears nothing.
    s.waits += 1;
    log.info('ranks waited for absent peers; relaunching', {
      stage,
      groupId,
      waits: s.waits,
      why: describe(err),
    });
    await sleep(Math.min(1000 * 2 ** Math.min(s.waits - 1, 5), 30_000));
    return;
  }
  s.restarts += 1;
  s.failed = true;
  // dalle.train.restarts (a sink: outside the isolate, not called on replay, no history change).
  proxySinks<DalleWorkflowSinks>().dalleMetrics.restart({ runId, stage });
  const why = describe(err);
  log.warn('segment failed; relaunching from the last committed checkpoint', {
    stage,
    groupId,
    restarts: s.restarts,
    why,
  });
  await tell({ restarts: s.restarts, message: `restart ${s.restarts} of ${stage} after ${groupId}: ${why}` });
  if (s.restarts > spec.train.maxRestarts) {
    throw ApplicationFailure.nonRetryable(
      `stage ${stage} failed ${s.restarts} times (maxRestarts ${spec.train.maxRestarts}); last: ${why}`,
      'TooManyRestarts',
    );
  }
  // Back off a little so a dead worker's replacement can come up; capped so recovery stays quick.
  await sleep(Math.min(1000 * 2 ** Math.min(s.restarts - 1, 4), 15_000));
}
