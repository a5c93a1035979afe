// The dataset behind every file-backed kind (folder, WebDataset, CUB, COCO): a list of candidate items
// is validated once at open time (captions present and non-empty, image decodable, aspect ratio in
// [1/2, 2]); failures are counted by reason, never thrown, and the survivors are numbered in order.
import { readFile } from 'node:fs/promises';
import {
  checkIndex,
  countSkip,
  pickCaption,
  SKIP_REASONS,
  type CaptionDraw,
  type Dataset,
  type DatasetItem,
  type SkipReason,
  type Split,
} from './dataset.ts';
import { aspectOk, decodeImage, ImageDecodeError, MAX_IMAGE_PIXELS, probeImage } from './image.ts';
import { OutsideRootError } from './inside-root.ts';

/** One possible item, before validation. */
export interface Candidate {
  key: string;
  /** Cleaned captions; null when the caption source is absent. */
  captions(): Promise<string[] | null>;
  /** Image bytes; null when the image file is absent. Other read errors reject. */
  image(): Promise<Uint8Array | null>;
  /** Dimensions known without reading the image (COCO's JSON), to reject bad aspect ratios early. */
  knownSize?: { width: number; height: number };
}

export interface ValidateOptions {
  /** 'decode': fully decode every image at open (catches truncated files; ~ms per image);
   *  'header': read dimensions only (fast; a file corrupt past its header fails later in `get`). */
  verify: 'decode' | 'header';
  /** Stop after this many valid items (0 = all). */
  limit: number;
  /** Items validated at once (sharp decodes on libuv's thread pool). */
  concurrency?: number;
}

interface Valid {
  key: string;
  captions: string[];
  image: () => Promise<Uint8Array | null>;
}

/** Read a file, or null when it does not exist. */
export async function readIfExists(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
}

async function validate(c: Candidate, verify: ValidateOptions['verify']): Promise<Valid | SkipReason> {
  let captions: string[] | null;
  try {
    captions = await c.captions();
  } catch (e) {
    if (e instanceof OutsideRootError) return SKIP_REASONS.outsideRoot;
    throw e;
  }
  if (captions === null) return SKIP_REASONS.missingCaptions;
  if (captions.length === 0) return SKIP_REASONS.emptyCaption;
  if (c.knownSize && !aspectOk(c.knownSize.width, c.knownSize.height)) return SKIP_REASONS.aspectRatio;
  if (c.knownSize && c.knownSize.width * c.knownSize.height > MAX_IMAGE_PIXELS) return SKIP_REASONS.tooLarge;
  let bytes: Uint8Array | null;
  try {
    bytes = await c.image();
  } catch (e) {
    return e instanceof OutsideRootError ? SKIP_REASONS.outsideRoot : SKIP_REASONS.unreadableImage;
  }
  if (bytes === null) return SKIP_REASONS.missingImage;
  try {
    // The header first: a decompression bomb is skipped before anything is decoded.
    const { width, height } = await probeImage(bytes, c.key);
    if (width * height > MAX_IMAGE_PIXELS) return SKIP_REASONS.tooLarge;
    if (!aspectOk(width, height)) return SKIP_REASONS.aspectRatio;
    if (verify === 'decode') await decodeImage(bytes, c.key);
  } catch (e) {
    if (e instanceof ImageDecodeError) return SKIP_REASONS.unreadableImage;
    throw e;
  }
  return { key: c.key, captions, image: () => c.image() };
}

class FileDataset implements Dataset {
  readonly size: number;

  constructor(
    readonly kind: Dataset['kind'],
    readonly split: Split,
    private readonly items: Valid[],
    readonly skipped: Record<string, number>,
  ) {
    this.size = items.length;
  }

  async get(i: number, draw?: CaptionDraw): Promise<DatasetItem> {
    checkIndex(i, this.size);
    const item = this.items[i];
    const bytes = await item.image().catch((e: Error) => {
      throw new ImageDecodeError(item.key, `cannot read: ${e.message}`);
    });
    if (bytes === null) throw new ImageDecodeError(item.key, 'file no longer exists');
    const { rgb, width, height } = await decodeImage(bytes, item.key);
    return { rgb, width, height, caption: pickCaption(item.captions, i, draw) };
  }

  async captions(i: number): Promise<string[]> {
    checkIndex(i, this.size);
    return this.items[i].captions.slice();
  }

  key(i: number): string {
    checkIndex(i, this.size);
    return this.items[i].key;
  }
}

/** Validate candidates in order and number the survivors. Never throws for a bad item. */
export async function openFileDataset(
  kind: Dataset['kind'],
  split: Split,
  candidates: Candidate[],
  opts: ValidateOptions,
): Promise<Dataset> {
  const { verify, limit, concurrency = 8 } = opts;
  const skipped: Record<string, number> = {};
  const items: Valid[] = [];
  for (let at = 0; at < candidates.length && (limit === 0 || items.length < limit); at += concurrency) {
    const window = candidates.slice(at, at + concurrency);
    const results = await Promise.all(window.map((c) => validate(c, verify)));
    for (const r of results) {
      if (limit !== 0 && items.length >= limit) break;
      if (typeof r === 'string') countSkip(skipped, r);
      else items.push(r);
    }
  }
  return new FileDataset(kind, split, items, skipped);
}
