// One public surface for storage. `openStores` picks JetStream (a NATS connection) or a local folder;
// callers get the same CheckpointStore and ModelStore either way.
import type { NatsConnection } from 'nats';
import { FolderStorageBackend, NatsStorageBackend, type StorageBackend } from './storage-backend.ts';
import { CheckpointStore, type CheckpointStoreOptions } from './checkpoints.ts';
import { ModelStore } from './models.ts';

export * from './storage-backend.ts';
export * from './checkpoints.ts';
export * from './models.ts';
export * from './sections.ts';
export * from './run-curves.ts';

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
  let ck: StorageBackend;
  let md: StorageBackend;
  if ('nc' in at) {
    ck = await NatsStorageBackend.open(at.nc, BUCKETS.checkpointObjects, BUCKETS.runsKv);
    md = await NatsStorageBackend.open(at.nc, BUCKETS.modelObjects, BUCKETS.modelsKv);
  } else {
    ck = new FolderStorageBackend(`${at.dir}/checkpoints`);
    md = new FolderStorageBackend(`${at.dir}/models`);
  }
  return { checkpoints: new CheckpointStore(ck, opts), models: new ModelStore(md) };
}
export * from './bundle.ts';
