// Dataset kind (a): a folder (searched recursively) of image files, each with a `.txt` of captions beside
// it, one caption per line (`cat.jpg` + `cat.txt`). Items are ordered by relative path.
import { readdir, stat } from 'node:fs/promises';
import { extname, join, relative } from 'node:path';
import {
  countSkip,
  DatasetNotFoundError,
  keyFraction,
  parseCaptionLines,
  SKIP_REASONS,
  type Dataset,
  type Split,
} from './dataset.ts';
import { openFileDataset, type Candidate, type ValidateOptions } from './file-dataset.ts';
import { readInside } from './inside-root.ts';
import { IMAGE_EXTENSIONS } from './image.ts';

/** Every file under `root`, as paths relative to it, sorted (byte order, so every machine agrees). A
 *  symlink to a file is listed (it is read only if its target stays inside the root: inside-root.ts); a
 *  symlink to a directory is not descended and is counted in `skipped` (`symlinked-dir`). */
export async function listFiles(root: string, skipped: Record<string, number> = {}): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const files: string[] = [];
  for (const e of entries) {
    const full = join(e.parentPath, e.name);
    if (e.isSymbolicLink()) {
      const st = await stat(full).catch(() => null); // a dangling link is simply not a file
      if (st?.isDirectory()) countSkip(skipped, SKIP_REASONS.symlinkedDir);
      if (!st?.isFile()) continue;
    } else if (!e.isFile()) continue;
    files.push(relative(root, full).split('\\').join('/'));
  }
  return files.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export interface FolderOptions extends ValidateOptions {
  split: Split;
  heldoutFraction: number;
}

/** Open a folder of image + caption pairs. A `.txt` without an image counts as `missing-image`. */
export async function openFolderDataset(root: string, opts: FolderOptions): Promise<Dataset> {
  const st = await stat(root).catch(() => null);
  if (!st?.isDirectory()) throw new DatasetNotFoundError('folder', root, 'not a directory');
  const skipped: Record<string, number> = {};
  const files = await listFiles(root, skipped);
  const stems = new Map<string, { image?: string; txt?: string }>();
  for (const f of files) {
    const ext = extname(f).toLowerCase();
    const stem = f.slice(0, f.length - ext.length);
    if (IMAGE_EXTENSIONS.includes(ext)) {
      const e = stems.get(stem) ?? {};
      // Two images with one stem (a.jpg, a.png): keep the first in sorted order; the other has no captions of its own.
      if (e.image === undefined) e.image = f;
      stems.set(stem, e);
    } else if (ext === '.txt') {
      stems.set(stem, { ...stems.get(stem), txt: f });
    }
  }
  const candidates: Candidate[] = [];
  for (const [stem, { image, txt }] of [...stems].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const inHeldout = keyFraction(stem) < opts.heldoutFraction;
    if (inHeldout !== (opts.split === 'heldout')) continue;
    if (image === undefined) {
      countSkip(skipped, SKIP_REASONS.missingImage);
      continue;
    }
    candidates.push({
      key: join(root, image),
      captions: async () =>
        txt === undefined
          ? null
          : parseCaptionLines((await readInside(root, join(root, txt)))?.toString('utf8') ?? ''),
      image: () => readInside(root, join(root, image)),
    });
  }
  const ds = await openFileDataset('folder', opts.split, candidates, opts);
  for (const [k, v] of Object.entries(skipped)) ds.skipped[k] = (ds.skipped[k] ?? 0) + v;
  return ds;
}
