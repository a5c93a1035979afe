// One training stage: a loop of segments. A segment = W rank activities from the last committed checkpoint.
// Any rank failing (dead worker: heartbeat timeout; lost peer: PeerLostError) cancels the others and the
// segment is relaunched from the last committed checkpoint with a new group id. A segment whose ranks only
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
  type StageEvent,
  type TrainShardResult,
  type TrainStageInput,
  type TrainStageResult,
} from '../contract/index.ts';
import type { DalleWorkflowSinks } from '../telemetry/index.ts';
import { rankActivities, utilityActivities } from './activities.ts';

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

export async function trainStage(input: TrainStageInput): Promise<TrainStageResult> {
  const { runId, stage, spec } = input;
  let restarts = input.restarts ?? 0;
  let groupSeq = input.groupSeq ?? 0;
  let paused = input.paused ?? false;
  // The rerank stage's own global batch may be smaller than the size an elastic run grew to before it:
  // such a size is moved into the stage's bounds (for the other stages this is the identity).
  let worldSize = clampWorldSize(spec, input.worldSize, stage) ?? input.worldSize;
  const parent = getExternalWorkflowHandle(input.parentId);
  const tell = (e: Omit<StageEvent, 'stage'>) => parent.signal(stageEventSignal, { stage, ...e });

  setHandler(pauseSignal, () => void (paused = true));
  setHandler(resumeSignal, () => void (paused = false));
  setHandler(setWorldSizeSignal, (w) => {
    // Validated by the CLI; a bad value here is ignored rather than failing a long run, and one outside
    // the stage's bounds (its global batch, train.elastic) is moved into them.
    const next = clampWorldSize(spec, w, stage);
    if (next !== undefined) worldSize = next;
    else log.warn('ignoring setWorldSize', { w, batchSize: stageBatchSize(spec, stage) });
  });
  // Rank 0 asks at each checkpoint and ends the segment there when this differs from its size.
  setHandler(worldSizeQuery, () => worldSize);

  const ranks = rankActivities(spec.train.heartbeatTimeout);
  const total = stageSteps(spec, stage);
  let last: TrainShardResult | undefined;
  let bytesRaw = 0;
  let bytesSent = 0;
  let stepMs = 0;
  let exposedCommMs = 0;
  let failed = false;
  let waits = 0;

  for (;;) {
    if (paused) await condition(() => !paused);
    const ck = await utilityActivities.resolveCheckpoint({ runId, stage, spec });
    for (const f of ck.fallbacks) await tell({ message: `checkpoint fallback: ${f}` });
    if (ck.step >= total) {
      return {
        stage,
        step: ck.step,
        loss: last?.loss ?? NaN,
        restarts,
        bytesRaw,
        bytesSent,
        stepMs,
        exposedCommMs,
      };
    }
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof trainStage>({ ...input, restarts, groupSeq, paused, worldSize });
    }

    const groupId = `${stage}-g${groupSeq++}`;
    if (failed) {
      await tell({
        resumedFrom: ck.step,
        message: `${stage} resumes from checkpoint ${ck.step} as group ${groupId}`,
      });
      failed = false;
    }
    const toStep = Math.min(ck.step + spec.train.segmentSteps, total);
    const launched = worldSize;
    let shards: Promise<TrainShardResult>[] = [];
    const scope = new CancellationScope();
    const all = scope.run(() => {
      shards = Array.from({ length: worldSize }, (_, rank) =>
        ranks.trainShard({
          runId,
          stage,
          spec,
          rank,
          worldSize,
          groupId,
          fromStep: ck.step,
          toStep,
          progressWorkflowId: input.parentId,
        }),
      );
      return Promise.all(shards);
    });
    try {
      const results = await all;
      last = results[0];
      for (const r of results) {
        bytesRaw += r.bytesRaw;
        bytesSent += r.bytesSent;
        stepMs += r.stepMs ?? 0; // absent in results recorded before the field existed
        exposedCommMs += r.exposedCommMs ?? 0;
      }
      // Rank 0 stopped the segment for a new size: the one setWorldSize asked for (already in worldSize,
      // which a later signal may have changed again: it wins), or idle workers an elastic run adopts.
      const resizeTo = last!.resizeTo;
      if (
        resizeTo !== undefined &&
        resizeTo !== launched &&
        clampWorldSize(spec, resizeTo, stage) === resizeTo
      ) {
        if (worldSize === launched) worldSize = resizeTo;
        await tell({
          worldSize,
          message: `${stage}: world size ${launched} → ${resizeTo} at checkpoint ${last!.step}`,
        });
      }
      waits = 0;
      if (!patched(CHECKPOINTS_IN_KV)) await tell({ checkpointStep: results[0]!.checkpointStep });
    } catch (err) {
      // The run itself being cancelled is not a failed segment.
      if (isCancellation(err) && CancellationScope.current().consideredCancelled) throw err;
      scope.cancel();
      await Promise.allSettled(shards);
      const fatal = nonRetryable(err);
      if (fatal) throw fatal;
      const absent = peersAbsent(err);
      if (absent > 0) {
        // An elastic run goes on with the ranks that came (never below train.elastic.min), spending nothing.
        const shrunk = worldSizeAfterShortfall(spec, worldSize, absent);
        if (shrunk !== worldSize) {
          await tell({
            worldSize: shrunk,
            message: `${stage}: world size ${worldSize} → ${shrunk} (elastic: ${worldSize - shrunk} rank(s) found no worker within joinTimeout)`,
          });
          worldSize = shrunk;
          waits = 0;
          continue;
        }
        // Waiting for a worker (a slow replacement, or none free yet): relaunch as it is, spend nothing.
        // Status shows whom the ranks wait for (rank 0's progress record); the root hears nothing.
        waits += 1;
        log.info('ranks waited for absent peers; relaunching', { stage, groupId, waits, why: describe(err) });
        await sleep(Math.min(1000 * 2 ** Math.min(waits - 1, 5), 30_000));
        continue;
      }
      restarts += 1;
      failed = true;
      // dalle.train.restarts (a sink: outside the isolate, not called on replay, no history change).
      proxySinks<DalleWorkflowSinks>().dalleMetrics.restart({ runId, stage });
      const why = describe(err);
      log.warn('segment failed; relaunching from the last committed checkpoint', {
        stage,
        groupId,
        restarts,
        why,
      });
      await tell({ restarts, message: `restart ${restarts} of ${stage} after ${groupId}: ${why}` });
      if (restarts > spec.train.maxRestarts) {
        throw ApplicationFailure.nonRetryable(
          `stage ${stage} failed ${restarts} times (maxRestarts ${spec.train.maxRestarts}); last: ${why}`,
          'TooManyRestarts',
        );
      }
      // Back off a little so a dead worker's replacement can come up; capped so recovery stays quick.
      await sleep(Math.min(1000 * 2 ** Math.min(restarts - 1, 4), 15_000));
    }
  }
}
