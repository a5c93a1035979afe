// One public surface for storage. `openStores` picks JetStream (a NATS connection) or a local folder;
// callers get the same CheckpointStore and ModelStore either way.
import type { NatsConnection } from 'nats';
import { FolderStorageBackend, NatsStorageBackend, type StorageBackend } from './storage-backend.ts';
import { CheckpointStore, type CheckpointStoreOptions } from './checkpoints.ts';
import { ModelStore, type ModelStoreOptions } from './models.ts';

export * from './storage-backend.ts';
export * from './checkpoints.ts';
export * from './models.ts';
export * from './sections.ts';
export * from './run-curves.ts';

/** Bucket names (docs/operations.md, "The store"). */
export const BUCKETS = {
  checkpointObjects: 'dalle-checkpoints',
  runsKv: 'dalle-runs',
  modelObjects: 'dalle-models',
  modelsKv: 'dalle-models',
} as const;

export type StoreLocation = { nc: NatsConnection } | { dir: string };

/** `readOnly` (sampler, CLI readers): bind to existing buckets only, never create one. */
export async function openStores(
  at: StoreLocation,
  opts: CheckpointStoreOptions & ModelStoreOptions & { readOnly?: boolean } = {},
): Promise<{ checkpoints: CheckpointStore; models: ModelStore }> {
  let ck: StorageBackend;
  let md: StorageBackend;
  if ('nc' in at) {
    const o = { readOnly: opts.readOnly };
    ck = await NatsStorageBackend.open(at.nc, BUCKETS.checkpointObjects, BUCKETS.runsKv, o);
    md = await NatsStorageBackend.open(at.nc, BUCKETS.modelObjects, BUCKETS.modelsKv, o);
  } else {
    ck = new FolderStorageBackend(`${at.dir}/checkpoints`);
    md = new FolderStorageBackend(`${at.dir}/models`);
  }
  return { checkpoints: new CheckpointStore(ck, opts), models: new ModelStore(md, opts) };
}
export * from './bundle.ts';

/** The model store alone (the sampler and evaluation read nothing else; a sampler user may read only it). */
export async function openModelStore(
  at: StoreLocation,
  opts: { readOnly?: boolean } = {},
): Promise<ModelStore> {
  if (!('nc' in at)) return new ModelStore(new FolderStorageBackend(`${at.dir}/models`));
  return new ModelStore(await NatsStorageBackend.open(at.nc, BUCKETS.modelObjects, BUCKETS.modelsKv, opts));
}
