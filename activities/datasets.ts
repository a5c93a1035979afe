// Datasets are opened once per worker process (opening a folder dataset scans and validates it).
import type { DatasetConfig } from '../config/index.ts';
import { openDataset, type Dataset } from '../data/index.ts';

const cache = new Map<string, Promise<Dataset>>();

export function dataset(cfg: DatasetConfig, split: 'train' | 'heldout' = 'train'): Promise<Dataset> {
  const key = JSON.stringify([cfg, split]);
  let p = cache.get(key);
  if (!p) {
    p = openDataset(cfg, { split });
    p.catch(() => cache.delete(key));
    cache.set(key, p);
  }
  return p;
}
