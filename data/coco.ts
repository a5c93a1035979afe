// Dataset kind (d): MS-COCO captions. `annotations` is the captions JSON (relative to path) and `images`
// the image folder. By default train = annotations/captions_train2017.json + train2017 and heldout =
// annotations/captions_val2017.json + val2017; with `annotations` set, that one file serves both splits,
// divided by `heldoutFraction` on a hash of the file name. Items follow the JSON's `images` order.
import { basename, isAbsolute, join, relative } from 'node:path';
import { z } from 'zod';
import {
  countSkip,
  DatasetFormatError,
  DatasetNotFoundError,
  keyFraction,
  SKIP_REASONS,
  type Dataset,
  type Split,
} from './dataset.ts';
import { openFileDataset, readIfExists, type Candidate, type ValidateOptions } from './file-dataset.ts';
import { joinInside, readInside } from './inside-root.ts';

const CocoCaptions = z.object({
  images: z.array(
    z.object({
      id: z.number(),
      file_name: z.string(),
      width: z.number().optional(),
      height: z.number().optional(),
    }),
  ),
  annotations: z.array(z.object({ image_id: z.number(), caption: z.string() })),
});

export interface CocoOptions extends ValidateOptions {
  split: Split;
  annotations?: string;
  images?: string;
  heldoutFraction: number;
}

/** The image folder a captions file implies: captions_<name>.json → <name>. */
function imagesFor(annotations: string): string {
  const m = /^captions_(.+)\.json$/.exec(basename(annotations));
  return m ? m[1] : '.';
}

export async function openCocoDataset(root: string, opts: CocoOptions): Promise<Dataset> {
  const defaults = opts.annotations === undefined;
  const annFile =
    opts.annotations ?? `annotations/captions_${opts.split === 'train' ? 'train' : 'val'}2017.json`;
  const imageDir = joinInside(root, opts.images ?? imagesFor(annFile));
  if (!imageDir)
    throw new DatasetFormatError('coco', root, `images '${opts.images}' leads outside the dataset root`);
  const annPath = joinInside(root, annFile);
  if (!annPath)
    throw new DatasetFormatError('coco', root, `annotations '${annFile}' leads outside the dataset root`);
  const bytes = await readIfExists(annPath);
  if (bytes === null) throw new DatasetNotFoundError('coco', root, `no captions file ${annFile}`);
  let parsed: z.infer<typeof CocoCaptions>;
  try {
    const r = CocoCaptions.safeParse(JSON.parse(bytes.toString('utf8')));
    if (!r.success)
      throw new Error(
        r.error.issues
          .slice(0, 3)
          .map((i) => `${i.path.join('.')}: ${i.message}`)
          .join('; '),
      );
    parsed = r.data;
  } catch (e) {
    throw new DatasetFormatError(
      'coco',
      join(root, annFile),
      `not a COCO captions file: ${(e as Error).message}`,
    );
  }
  const byImage = new Map<number, string[]>();
  for (const a of parsed.annotations) {
    const c = a.caption.replace(/\s+/g, ' ').trim();
    const list = byImage.get(a.image_id) ?? [];
    if (c) list.push(c);
    byImage.set(a.image_id, list);
  }
  const candidates: Candidate[] = [];
  const skipped: Record<string, number> = {};
  for (const img of parsed.images) {
    if (!defaults && keyFraction(img.file_name) < opts.heldoutFraction !== (opts.split === 'heldout'))
      continue;
    const captions = byImage.get(img.id) ?? [];
    // file_name is data: `../../etc/passwd` is skipped and counted, never read.
    const path = isAbsolute(img.file_name)
      ? undefined
      : joinInside(root, join(relative(root, imageDir), img.file_name));
    if (!path) {
      countSkip(skipped, SKIP_REASONS.outsideRoot);
      continue;
    }
    candidates.push({
      key: path,
      captions: async () => captions,
      image: () => readInside(root, path),
      knownSize: img.width && img.height ? { width: img.width, height: img.height } : undefined,
    });
  }
  const ds = await openFileDataset('coco', opts.split, candidates, opts);
  for (const [k, v] of Object.entries(skipped)) ds.skipped[k] = (ds.skipped[k] ?? 0) + v;
  return ds;
}
