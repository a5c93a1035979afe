// Dataset kind (d): MS-COCO captions. `annotations` is the captions JSON (relative to path) and `images`
// the image folder. By default train = annotations/captions_train2017.json + train2017 and heldout =
// annotations/captions_val2017.json + val2017; with `annotations` set, that one file serves both splits,
// divided by `heldoutFraction` on a hash of the file name. Items follow the JSON's `images` order.
import { basename, join } from 'node:path';
import { z } from 'zod';
import {
  DatasetFormatError,
  DatasetNotFoundError,
  keyFraction,
  type Dataset,
  type Split,
} from './dataset.ts';
import { openFileDataset, readIfExists, type Candidate, type ValidateOptions } from './file-dataset.ts';

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
  const imageDir = join(root, opts.images ?? imagesFor(annFile));
  const bytes = await readIfExists(join(root, annFile));
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
  for (const img of parsed.images) {
    if (!defaults && keyFraction(img.file_name) < opts.heldoutFraction !== (opts.split === 'heldout'))
      continue;
    const captions = byImage.get(img.id) ?? [];
    const path = join(imageDir, img.file_name);
    candidates.push({
      key: path,
      captions: async () => captions,
      image: () => readIfExists(path),
      knownSize: img.width && img.height ? { width: img.width, height: img.height } : undefined,
    });
  }
  return openFileDataset('coco', opts.split, candidates, opts);
}
