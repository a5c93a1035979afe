// One public surface for storage. `openStores` picks JetStream (a NATS connection) or a local folder;
// callers get the same CheckpointStore and ModelStore either way.
import type { NatsConnection } from 'nats';
import { FolderBackend, NatsBackend, type Backend } from './backend.ts';
import { CheckpointStore, type CheckpointStoreOptions } from './checkpoints.ts';
import { ModelStore } from './models.ts';

export * from './backend.ts';
export * from './checkpoints.ts';
export * from './models.ts';
export * from './sections.ts';

/** Bucket names (DESIGN.md, Storage). */
export const BUCKETS = {
  checkpointObjects: 'dalle-checkpoints',
  runsKv: 'dalle-runs',
  modelObjects: 'dalle-models',
  modelsKv: 'dalle-models',
} as const;

export type StoreLocation = { nc: NatsConnection } | { dir: string };

export async function openStores(
  at: StoreLocation,
  opts: CheckpointStoreOptions = {},
): Promise<{ checkpoints: CheckpointStore; models: ModelStore }> {
  let ck: Backend;
  let md: Backend;
  if ('nc' in at) {
    ck = await NatsBackend.open(at.nc, BUCKETS.checkpointObjects, BUCKETS.runsKv);
    md = await NatsBackend.open(at.nc, BUCKETS.modelObjects, BUCKETS.modelsKv);
  } else {
    ck = new FolderBackend(`${at.dir}/checkpoints`);
    md = new FolderBackend(`${at.dir}/models`);
  }
  return { checkpoints: new CheckpointStore(ck, opts), models: new ModelStore(md) };
}
export * from './bundle.ts';
