// Where a sharded segment's ranks run: the stage asks (activity placeRanks, so that the answer is in the
// history and replays) which hosts have free rank slots, and hands rank h·G + l to host h's own task queue.
import type { RunSpec } from '../config/spec.ts';
import type { StageName } from './activities.ts';

export interface PlaceRanksInput {
  runId: string;
  stage: StageName;
  worldSize: number;
}

/** A segment's placement: `queues[r]` is the task queue rank r is scheduled on, and `hosts[h]` the host
 *  of ranks h·perHost … (h+1)·perHost − 1. Empty `queues`: no host has room for an even layout with
 *  perHost ≥ 2, and every rank goes to the shared queue as without placement (`why` says so). */
export interface RankPlacement {
  queues: string[];
  hosts: string[];
  perHost: number;
  why?: string;
}

/** How long a rank placed on a host's queue may wait for one of that host's workers before it is handed
 *  to the shared queue instead: a quarter of train.joinTimeout (at least 1 s), so that the rank still
 *  joins its group in time when a worker of the shared queue takes it at once. */
export function placementWaitSeconds(spec: RunSpec): number {
  return Math.max(1, Math.floor(spec.train.joinTimeout / 4));
}
