// One entry point from a validated DatasetConfig to a Dataset of any kind.
import { resolve } from 'node:path';
import type { DatasetConfig } from '../config/index.ts';
import { openCocoDataset } from './coco.ts';
import { openCubDataset } from './cub.ts';
import type { Dataset, Split } from './dataset.ts';
import { openFolderDataset } from './folder.ts';
import { ShapesDataset } from './shapes-dataset.ts';
import { openWebDataset } from './webdataset.ts';

export interface OpenDatasetOptions {
  /** 'train' (default) or 'heldout': shapes' held-out compositions, CUB's test images, COCO val2017, or
   *  the `heldoutFraction` of a folder/WebDataset chosen by key hash. */
  split?: Split;
}

/** Open (index and validate) a dataset. Bad items are skipped and counted in `skipped`; a missing path or
 *  malformed index file throws DatasetNotFoundError / DatasetFormatError. Relative paths resolve
 *  against the working directory. */
export async function openDataset(cfg: DatasetConfig, opts: OpenDatasetOptions = {}): Promise<Dataset> {
  const split = opts.split ?? 'train';
  if (cfg.kind === 'shapes') return new ShapesDataset(cfg, split);
  const path = resolve(cfg.path);
  const common = { split, verify: cfg.verify, limit: cfg.limit };
  switch (cfg.kind) {
    case 'folder':
      return openFolderDataset(path, { ...common, heldoutFraction: cfg.heldoutFraction });
    case 'webdataset':
      return openWebDataset(path, { ...common, heldoutFraction: cfg.heldoutFraction });
    case 'cub':
      return openCubDataset(path, { ...common, captions: cfg.captions });
    case 'coco':
      return openCocoDataset(path, {
        ...common,
        annotations: cfg.annotations,
        images: cfg.images,
        heldoutFraction: cfg.heldoutFraction,
      });
  }
}
