// Activities of task queue `dalle-train`, built from their dependencies (a factory, so tests and
// the worker wire real connections the same way).
import { hostname } from 'node:os';
import type { Client } from '@temporalio/client';
import type { NatsConnection } from 'nats';
import { RunSpec, specHash } from '../config/index.ts';
import { CheckpointStore, type ModelStore, type PartRef } from '../store/index.ts';
import { commitEncoded, encodeShard, prepareTokenizer } from './encode-dataset.ts';
import { withFatalErrors } from './errors.ts';
import type { HeartbeatThread } from './heartbeat-thread.ts';
import { planPlacement } from './placement.ts';
import { surveyWorkers } from './presence.ts';
import { publishModel } from './publish-model.ts';
import { trainShard } from './train-shard.ts';
import {
  TASK_QUEUE,
  type EncodeShardInput,
  type PlaceRanksInput,
  type PublishInput,
  type ResolveCheckpointInput,
  type RankPlacement,
  type ResolvedCheckpoint,
  type TrainShardInput,
} from '../contract/index.ts';

export interface ActivityDeps {
  nc: NatsConnection;
  checkpoints: CheckpointStore;
  models: ModelStore;
  client: Client;
  /** The worker's helper thread that heartbeats ranks through long synchronous steps. */
  heartbeats: HeartbeatThread;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
  /** The machine this worker is on (ranks of one host shard parameters among themselves). */
  hostId?: string;
  /** The task queue this worker polls (whose idle workers an elastic run adopts). */
  taskQueue?: string;
}

export { HeartbeatThread } from './heartbeat-thread.ts';
export { answerPresence, idleSlots, PRESENCE_SUBJECT, surveyWorkers, WorkerPresence } from './presence.ts';

/** Presence surveys a placement makes (1 s apart) before it hands a segment to the shared queue. */
const PLACEMENT_LOOKS = 3;

/** Every activity re-validates the spec it is handed: a workflow started by an older version carries a
 *  spec without newer fields, and zod fills their defaults (or names what is wrong). */
function checked<I extends { spec: RunSpec }>(input: I): I {
  return { ...input, spec: RunSpec.parse(input.spec) };
}

export function createActivities(deps: ActivityDeps) {
  const log = deps.log ?? ((msg, fields) => console.log(`[worker] ${msg}`, fields ?? ''));
  return withFatalErrors({
    async resolveCheckpoint(input: ResolveCheckpointInput): Promise<ResolvedCheckpoint> {
      const fallbacks: string[] = [];
      const m = await deps.checkpoints.resolve(input.runId, input.stage, (f) =>
        fallbacks.push(`step ${f.badStep} unusable (${f.reason}); using ${f.usingStep ?? 'a fresh start'}`),
      );
      for (const f of fallbacks) log(`checkpoint fallback for ${input.runId}/${input.stage}: ${f}`);
      // A finished stage of another spec would otherwise be taken as done without any rank loading it.
      if (m && input.spec) CheckpointStore.checkSpec(m, specHash(checked({ spec: input.spec }).spec));
      return { step: m?.step ?? 0, fallbacks };
    },
    /** Where a sharded segment's ranks go: surveys the workers of this worker's (shared) queue. */
    async placeRanks(input: PlaceRanksInput): Promise<RankPlacement> {
      const queue = deps.taskQueue ?? TASK_QUEUE;
      // The ranks of the segment before may still be releasing their slots: a few looks before giving up.
      let placement = planPlacement(await surveyWorkers(deps.nc, queue), input.worldSize, queue);
      for (let look = 1; look < PLACEMENT_LOOKS && placement.queues.length === 0; look++) {
        await new Promise((r) => setTimeout(r, 1000));
        placement = planPlacement(await surveyWorkers(deps.nc, queue), input.worldSize, queue);
      }
      const where = placement.why ?? `${placement.hosts.join(', ')} × ${placement.perHost} rank(s)`;
      log(`placement of ${input.runId}/${input.stage} (${input.worldSize} ranks): ${where}`);
      return placement;
    },
    async trainShard(input: TrainShardInput) {
      return trainShard(
        { ...deps, log, hostId: deps.hostId ?? hostname(), taskQueue: deps.taskQueue ?? TASK_QUEUE },
        checked(input),
      );
    },
    async prepareTokenizer(input: { runId: string; spec: RunSpec }): Promise<PartRef> {
      return prepareTokenizer(deps.checkpoints, checked(input));
    },
    async encodeShard(input: EncodeShardInput): Promise<PartRef> {
      return encodeShard(deps.checkpoints, checked(input));
    },
    async commitEncoded(input: {
      runId: string;
      spec: RunSpec;
      parts: PartRef[];
      shards: number;
    }): Promise<void> {
      return commitEncoded(deps.checkpoints, checked(input));
    },
    async publishModel(input: PublishInput) {
      return publishModel(deps, checked(input));
    },
  });
}
