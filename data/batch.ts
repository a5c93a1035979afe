// Batches for data-parallel training with exact resume.
//
// The global batch of step s is stream positions [s·B, (s+1)·B) (B = globalBatch; see order.ts for the
// stream). Rank r of W takes positions [s·B + ⌊r·B/W⌋, s·B + ⌊(r+1)·B/W⌋): the ranks' slices, concatenated
// in rank order, are exactly the W = 1 batch. Every random choice of a sample (its caption, its crop and
// flip) is keyed by its stream position, never by rank or W. So:
//   - the data cursor of a checkpoint is just `step` (plus the seed and B of the run spec);
//   - changing W between segments (e.g. a worker lost) changes no sample of any step.
import { ImageDecodeError } from './image.ts';
import type { Dataset } from './dataset.ts';
import { itemAt } from './order.ts';
import { preprocessDvae, preprocessTransformer } from './preprocess.ts';
import { rngFor } from '../random/index.ts';

export interface LoadBatchOptions {
  /** The run's seed (train.seed): data order, captions and crops all derive from it. */
  seed: number;
  /** The update index; the only data cursor. */
  step: number;
  rank: number;
  worldSize: number;
  /** Samples per step over all ranks (train.batchSize). */
  globalBatch: number;
  /** Output side (dvae.resolution). */
  resolution: number;
  /** Which preprocessing of docs/model.md: 'dvae' (random crop + flip) or 'transformer' (centred crop, no flip). */
  pipeline: 'dvae' | 'transformer';
  /** Samples decoded at once (default 8). */
  concurrency?: number;
}

export interface Batch {
  images: Uint8Array; // [n, res, res, 3]
  captions: string[]; // [n]
  n: number;
  /** Dataset index of each sample (after any substitution). */
  indices: number[];
  /** Stream position of each sample: the key of its randomness (e.g. for BPE dropout seeds). */
  positions: number[];
  /** Samples whose image failed to decode after opening and were replaced by the next item of the epoch. */
  substituted: number;
}

/** Options that cannot describe a batch. */
export class BatchOptionsError extends Error {
  override name = 'BatchOptionsError';
  readonly fatal = true;
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`loadBatch: ${field} = ${JSON.stringify(value)}: ${rule}`);
  }
}

/** A dataset with no items to train on. */
export class EmptyDatasetError extends Error {
  override name = 'EmptyDatasetError';
  readonly fatal = true;
  constructor(
    readonly kind: string,
    readonly skipped: Record<string, number>,
  ) {
    super(`${kind} dataset has no usable items (skipped: ${JSON.stringify(skipped)})`);
  }
}

/** Every image of a whole epoch failed to decode. */
export class NoDecodableItemError extends Error {
  override name = 'NoDecodableItemError';
  constructor(readonly position: number) {
    super(`no item of the epoch of stream position ${position} decodes`);
  }
}

function checkOptions(o: LoadBatchOptions): void {
  const int = (field: keyof LoadBatchOptions, min: number): void => {
    const v = o[field];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min)
      throw new BatchOptionsError(field, v, `must be an integer ≥ ${min}`);
  };
  int('seed', 0);
  int('step', 0);
  int('rank', 0);
  int('worldSize', 1);
  int('globalBatch', 1);
  int('resolution', 1);
  if (o.rank >= o.worldSize)
    throw new BatchOptionsError('rank', o.rank, `must be < worldSize (${o.worldSize})`);
  if (o.globalBatch < o.worldSize)
    throw new BatchOptionsError(
      'globalBatch',
      o.globalBatch,
      `must be ≥ worldSize (${o.worldSize}) so every rank gets a sample`,
    );
  if (o.pipeline !== 'dvae' && o.pipeline !== 'transformer')
    throw new BatchOptionsError('pipeline', o.pipeline, "must be 'dvae' or 'transformer'");
}

/** The stream positions of rank r's slice of step s (see the file header). */
export function rankSlice(
  step: number,
  rank: number,
  worldSize: number,
  globalBatch: number,
): { start: number; end: number } {
  const base = step * globalBatch;
  return {
    start: base + Math.floor((rank * globalBatch) / worldSize),
    end: base + Math.floor(((rank + 1) * globalBatch) / worldSize),
  };
}

/** Load, caption and preprocess this rank's slice of the global batch of `step`. */
export async function loadBatch(ds: Dataset, o: LoadBatchOptions): Promise<Batch> {
  checkOptions(o);
  if (ds.size === 0) throw new EmptyDatasetError(ds.kind, ds.skipped);
  const { start, end } = rankSlice(o.step, o.rank, o.worldSize, o.globalBatch);
  const n = end - start;
  const res = o.resolution;
  const images = new Uint8Array(n * res * res * 3);
  const captions = new Array<string>(n);
  const indices = new Array<number>(n);
  const positions = new Array<number>(n);
  let substituted = 0;
  const preprocess = o.pipeline === 'dvae' ? preprocessDvae : preprocessTransformer;

  const loadOne = async (j: number): Promise<void> => {
    const p = start + j;
    const { epoch, offset } = itemAt(o.seed, p, ds.size);
    // A file that went bad after open (possible with verify: 'header') is replaced by the next item of
    // the same epoch: deterministic, since whether a file decodes does not depend on who reads it.
    for (let k = 0; k < ds.size; k++) {
      const { index } = itemAt(o.seed, epoch * ds.size + ((offset + k) % ds.size), ds.size);
      try {
        const item = await ds.get(index, { seed: o.seed, epoch });
        const img = preprocess(item.rgb, item.width, item.height, res, rngFor(o.seed, 'preprocess', p));
        images.set(img, j * res * res * 3);
        captions[j] = item.caption;
        indices[j] = index;
        positions[j] = p;
        if (k > 0) substituted++;
        return;
      } catch (e) {
        if (!(e instanceof ImageDecodeError)) throw e;
      }
    }
    throw new NoDecodableItemError(p);
  };

  const concurrency = Math.max(1, o.concurrency ?? 8);
  for (let at = 0; at < n; at += concurrency) {
    await Promise.all(Array.from({ length: Math.min(concurrency, n - at) }, (_, k) => loadOne(at + k)));
  }
  return { images, captions, n, indices, positions, substituted };
}
