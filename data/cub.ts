// Dataset kind (c): CUB-200-2011 with the Reed et al. (2016) captions. Layout:
//   <path>/images.txt                 "<id> <class>/<name>.jpg" per line (the item order)
//   <path>/images/<class>/<name>.jpg
//   <path>/train_test_split.txt       "<id> <1 train | 0 test>" (test → the heldout split; optional)
//   <captions>/<class>/<name>.txt     ten captions, one per line (Reed's `text_c10`)
// `captions` defaults to the first existing of text_c10, ../text_c10, ../cvpr2016_cub/text_c10, ../text.
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import {
  countSkip,
  DatasetFormatError,
  DatasetNotFoundError,
  parseCaptionLines,
  SKIP_REASONS,
  type Dataset,
  type Split,
} from './dataset.ts';
import { openFileDataset, readIfExists, type Candidate, type ValidateOptions } from './file-dataset.ts';
import { joinInside, readInside } from './inside-root.ts';

export const CUB_CAPTION_DIRS = ['text_c10', '../text_c10', '../cvpr2016_cub/text_c10', '../text'];

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null))?.isDirectory() ?? false;
}

/** "<id> <value>" lines → Map(id → value). */
function idLines(text: string, file: string, root: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const [n, line] of text.split(/\r?\n/).entries()) {
    const t = line.trim();
    if (!t) continue;
    const sp = t.indexOf(' ');
    if (sp < 0)
      throw new DatasetFormatError(
        'cub',
        root,
        `${file} line ${n + 1} is not "<id> <value>": ${JSON.stringify(t)}`,
      );
    out.set(t.slice(0, sp), t.slice(sp + 1).trim());
  }
  return out;
}

export interface CubOptions extends ValidateOptions {
  split: Split;
  /** Caption folder relative to the root (default: searched, see CUB_CAPTION_DIRS). */
  captions?: string;
}

export async function openCubDataset(root: string, opts: CubOptions): Promise<Dataset> {
  if (!(await isDir(root))) throw new DatasetNotFoundError('cub', root, 'not a directory');
  const imagesTxt = await readIfExists(join(root, 'images.txt'));
  if (imagesTxt === null)
    throw new DatasetNotFoundError('cub', root, 'no images.txt (is this the CUB_200_2011 folder?)');
  const tried = opts.captions !== undefined ? [opts.captions] : CUB_CAPTION_DIRS;
  let captionRoot: string | undefined;
  for (const c of tried) {
    if (await isDir(join(root, c))) {
      captionRoot = join(root, c);
      break;
    }
  }
  if (captionRoot === undefined) {
    throw new DatasetFormatError(
      'cub',
      root,
      `no Reed et al. caption folder; looked in ${tried.map((c) => resolve(root, c)).join(', ')}`,
    );
  }
  const images = idLines(imagesTxt.toString('utf8'), 'images.txt', root);
  const splitTxt = await readFile(join(root, 'train_test_split.txt'), 'utf8').catch(() => null);
  const isTrain = splitTxt === null ? null : idLines(splitTxt, 'train_test_split.txt', root);
  const candidates: Candidate[] = [];
  const skipped: Record<string, number> = {};
  const captionBase = captionRoot;
  for (const [id, rel] of images) {
    // Without train_test_split.txt every image is train and the heldout split is empty.
    const train = isTrain === null ? true : isTrain.get(id) !== '0';
    if (train !== (opts.split === 'train')) continue;
    // images.txt is data: a line that climbs out of the images (or captions) folder is skipped, counted.
    const image = joinInside(join(root, 'images'), rel);
    const txt = joinInside(captionBase, rel.replace(/\.[^./]+$/, '') + '.txt');
    if (!image || !txt) {
      countSkip(skipped, SKIP_REASONS.outsideRoot);
      continue;
    }
    candidates.push({
      key: image,
      captions: async () => {
        const b = await readInside(captionBase, txt);
        return b === null ? null : parseCaptionLines(b.toString('utf8'));
      },
      image: () => readInside(root, image),
    });
  }
  const ds = await openFileDataset('cub', opts.split, candidates, opts);
  for (const [k, v] of Object.entries(skipped)) ds.skipped[k] = (ds.skipped[k] ?? 0) + v;
  return ds;
}
