// The rank activities of one segment, and where they run. A flat segment hands every rank to the shared
// queue (whichever worker polls first takes it). A sharded one first asks where the workers' free slots
// are (activity placeRanks: its answer is in the history, so replay places alike) and hands rank h·G + l
// to host h's own queue, so that the ranks of a host are consecutive and the layout is even whenever the
// workers allow it. A placed rank that none of its host's workers takes within placementWaitSeconds (they
// went away after the survey) goes to the shared queue, and the stage says so.
import { ActivityFailure, log, patched, TimeoutFailure } from '@temporalio/workflow';
import {
  PATCH,
  placementWaitSeconds,
  type RankPlacement,
  type StageEvent,
  type TrainShardInput,
  type TrainShardResult,
  type TrainStageInput,
} from '../contract/index.ts';
import { rankActivities, utilityActivities } from './activities.ts';

type Tell = (e: Omit<StageEvent, 'stage'>) => Promise<void>;

/** A sharded segment's placement (undefined: flat, a single rank, or a history from before placement). */
export async function placeSegment(
  input: TrainStageInput,
  worldSize: number,
): Promise<RankPlacement | undefined> {
  const { runId, stage, spec } = input;
  if (spec.train.parameterSharding !== 'host' || worldSize < 2 || !patched(PATCH.hostPlacement))
    return undefined;
  const placement = await utilityActivities.placeRanks({ runId, stage, worldSize });
  if (placement.queues.length === 0)
    log.info('ranks not placed: all on the shared queue', { stage, why: placement.why });
  else log.info('ranks placed', { stage, hosts: placement.hosts, perHost: placement.perHost });
  return placement;
}

/** The rank never started: no worker polled its queue within the scheduleToStart timeout. */
function notTaken(err: unknown): boolean {
  return (
    err instanceof ActivityFailure &&
    err.cause instanceof TimeoutFailure &&
    err.cause.timeoutType === 'SCHEDULE_TO_START'
  );
}

/** Starts the segment's W rank activities (call inside the segment's cancellation scope). */
export function launchRanks(
  input: TrainStageInput,
  shard: Omit<TrainShardInput, 'rank'>,
  placement: RankPlacement | undefined,
  tell: Tell,
): Promise<TrainShardResult>[] {
  const { spec, stage } = input;
  const shared = rankActivities(spec.train.heartbeatTimeout);
  return Array.from({ length: shard.worldSize }, (_, rank) => {
    const taskQueue = placement?.queues[rank];
    if (!taskQueue) return shared.trainShard({ ...shard, rank });
    const waitSec = placementWaitSeconds(spec);
    const placed = rankActivities(spec.train.heartbeatTimeout, { taskQueue, waitSec });
    return placed.trainShard({ ...shard, rank }).catch(async (err: unknown) => {
      if (!notTaken(err)) throw err;
      const message = `${stage}: rank ${rank} of ${shard.groupId} placed on ${taskQueue} was not taken within ${waitSec} s (the host's workers gone?): handed to the shared queue`;
      log.warn(message, { stage, rank, taskQueue });
      await tell({ message });
      return shared.trainShard({ ...shard, rank });
    });
  });
}
