// The one interface every dataset kind implements, and the rules they share: which items are skipped
// (and counted), how captions are cleaned, and how one caption is drawn per (seed, epoch).
import { rngFor } from '../random/index.ts';

export type Split = 'train' | 'heldout';

/** Which caption an item yields: a pure function of (seed, epoch, item index). */
export interface CaptionDraw {
  seed: number;
  epoch: number;
}

export interface DatasetItem {
  rgb: Uint8Array; // [height, width, 3]
  width: number;
  height: number;
  caption: string;
}

/** Why an item was left out at open time. Keys of `Dataset.skipped`. */
export const SKIP_REASONS = {
  /** An image without a caption file (folder, WebDataset, CUB). */
  missingCaptions: 'missing-captions',
  /** A caption file or annotation list with no non-blank caption. */
  emptyCaption: 'empty-caption',
  /** Captions without an image (a .txt alone, a COCO entry whose file is absent). */
  missingImage: 'missing-image',
  /** Bytes sharp cannot decode (unsupported, truncated, corrupt). */
  unreadableImage: 'unreadable-image',
  /** width/height outside [1/2, 2]. */
  aspectRatio: 'aspect-ratio',
  /** More pixels than MAX_IMAGE_PIXELS (a decompression bomb is not a training image). */
  tooLarge: 'too-large',
  /** A path from the dataset's own files (COCO file_name, CUB images.txt, a tar member name, a symlink's
   *  target) that leads outside the dataset root. */
  outsideRoot: 'outside-root',
  /** A symlink to a directory inside a folder dataset: not descended (a loop or a second copy of a tree). */
  symlinkedDir: 'symlinked-dir',
} as const;
export type SkipReason = (typeof SKIP_REASONS)[keyof typeof SKIP_REASONS];

/** A dataset opened for one split. Items are numbered 0..size−1 in a fixed order (sorted paths, archive
 *  order, annotation order); skipped items are not numbered. */
export interface Dataset {
  readonly kind: 'shapes' | 'folder' | 'webdataset' | 'cub' | 'coco';
  readonly split: Split;
  readonly size: number;
  /** Items left out at open time, by reason (see SKIP_REASONS). */
  readonly skipped: Record<string, number>;
  /** Decoded image and one caption drawn by `draw` (default { seed: 0, epoch: 0 }). Rejects with
   *  DatasetIndexError for a bad index, ImageDecodeError if the file went bad after opening. */
  get(i: number, draw?: CaptionDraw): Promise<DatasetItem>;
  /** All captions of item i (cleaned, case kept), e.g. to train the tokenizer. */
  captions(i: number): Promise<string[]>;
  /** A stable name of item i for logs and errors (a path, `shard.tar:key`, `shapes/train/17`). */
  key(i: number): string;
}

/** An index outside 0..size−1. */
export class DatasetIndexError extends Error {
  override name = 'DatasetIndexError';
  constructor(
    readonly index: number,
    readonly size: number,
  ) {
    super(`dataset index ${index} is outside 0..${size - 1}`);
  }
}

/** A dataset path that does not exist. */
export class DatasetNotFoundError extends Error {
  override name = 'DatasetNotFoundError';
  readonly fatal = true;
  constructor(
    readonly kind: string,
    readonly path: string,
    readonly detail = '',
  ) {
    super(`${kind} dataset not found at ${path}${detail ? `: ${detail}` : ''}`);
  }
}

/** A dataset whose layout or index files are malformed (not a per-item problem: those are skipped). */
export class DatasetFormatError extends Error {
  override name = 'DatasetFormatError';
  readonly fatal = true;
  constructor(
    readonly kind: string,
    readonly path: string,
    readonly problem: string,
  ) {
    super(`${kind} dataset at ${path}: ${problem}`);
  }
}

export function checkIndex(i: number, size: number): void {
  if (!Number.isInteger(i) || i < 0 || i >= size) throw new DatasetIndexError(i, size);
}

/** Captions of a text file: one per line, trimmed, blank lines dropped. */
export function parseCaptionLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.replace(/\s+/g, ' ').trim())
    .filter((l) => l.length > 0);
}

/** The caption item `index` yields in `epoch`: uniform over its captions, keyed by (seed, epoch, index). */
export function pickCaption(
  captions: readonly string[],
  index: number,
  draw: CaptionDraw = { seed: 0, epoch: 0 },
): string {
  if (captions.length === 1) return captions[0];
  return captions[rngFor(draw.seed, 'caption', draw.epoch, index).int(captions.length)];
}

export function countSkip(skipped: Record<string, number>, reason: SkipReason): void {
  skipped[reason] = (skipped[reason] ?? 0) + 1;
}

/** Stable fraction in [0, 1) of a key (FNV-1a), for splitting a dataset into train/heldout by key. */
export function keyFraction(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  return (h >>> 0) / 0x1_0000_0000;
}
