// Activities of task queue `dalle-train`, built from their dependencies (STYLE.md: a factory, so tests and
// the worker wire real connections the same way).
import type { Client } from '@temporalio/client';
import type { NatsConnection } from 'nats';
import type { RunSpec } from '../config/index.ts';
import type { CheckpointStore, ModelStore, PartRef } from '../store/index.ts';
import { commitEncoded, encodeShard, prepareTokenizer } from './encode-dataset.ts';
import { publishModel } from './publish-model.ts';
import { trainShard } from './train-shard.ts';
import type { EncodeShardInput, PublishInput, ResolveCheckpointInput, ResolvedCheckpoint, TrainShardInput } from './types.ts';

export interface ActivityDeps {
  nc: NatsConnection;
  checkpoints: CheckpointStore;
  models: ModelStore;
  client: Client;
  log?: (msg: string, fields?: Record<string, unknown>) => void;
}

export function createActivities(deps: ActivityDeps) {
  const log = deps.log ?? ((msg, fields) => console.log(`[worker] ${msg}`, fields ?? ''));
  return {
    async resolveCheckpoint(input: ResolveCheckpointInput): Promise<ResolvedCheckpoint> {
      const fallbacks: string[] = [];
      const m = await deps.checkpoints.resolve(input.runId, input.stage, (f) =>
        fallbacks.push(`step ${f.badStep} unusable (${f.reason}); using ${f.usingStep ?? 'a fresh start'}`),
      );
      for (const f of fallbacks) log(`checkpoint fallback for ${input.runId}/${input.stage}: ${f}`);
      return { step: m?.step ?? 0, fallbacks };
    },
    async trainShard(input: TrainShardInput) {
      return trainShard({ ...deps, log }, input);
    },
    async prepareTokenizer(input: { runId: string; spec: RunSpec }): Promise<PartRef> {
      return prepareTokenizer(deps.checkpoints, input);
    },
    async encodeShard(input: EncodeShardInput): Promise<PartRef> {
      return encodeShard(deps.checkpoints, input);
    },
    async commitEncoded(input: { runId: string; spec: RunSpec; parts: PartRef[]; shards: number }): Promise<void> {
      return commitEncoded(deps.checkpoints, input);
    },
    async publishModel(input: PublishInput) {
      return publishModel(deps, input);
    },
  };
}
