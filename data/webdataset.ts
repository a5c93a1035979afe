// Dataset kind (b): WebDataset tar shards. A sample is the group of members sharing a key (the member
// path up to the first '.' of its file name): `key.jpg|jpeg|png|webp` + `key.txt` (captions, one per line).
// `path` is a folder of `.tar` files (searched recursively, sorted) or one `.tar` file. Items are ordered
// by shard, then by first appearance in the shard.
import { open, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import {
  countSkip,
  DatasetFormatError,
  DatasetNotFoundError,
  keyFraction,
  parseCaptionLines,
  SKIP_REASONS,
  type Dataset,
  type Split,
} from './dataset.ts';
import { openFileDataset, type Candidate, type ValidateOptions } from './file-dataset.ts';
import { listFiles } from './folder.ts';
import { IMAGE_EXTENSIONS } from './image.ts';
import { safeEntryName } from './inside-root.ts';
import { realpath } from 'node:fs/promises';
import { listTar, readTarMember, type TarMember } from './tar.ts';

/** WebDataset's split of a member path into (key, extension): the extension starts at the first '.' of the file name. */
export function splitKey(name: string): { key: string; ext: string } {
  const slash = name.lastIndexOf('/');
  const dot = name.indexOf('.', slash + 1);
  if (dot < 0) return { key: name, ext: '' };
  return { key: name.slice(0, dot), ext: name.slice(dot + 1).toLowerCase() };
}

async function readMembers(path: string, members: TarMember[]): Promise<Map<TarMember, Buffer>> {
  const out = new Map<TarMember, Buffer>();
  const fh = await open(path, 'r');
  try {
    for (const m of members) {
      const buf = Buffer.alloc(m.size);
      await fh.read(buf, 0, m.size, m.offset);
      out.set(m, buf);
    }
  } finally {
    await fh.close();
  }
  return out;
}

export interface WebDatasetOptions extends ValidateOptions {
  split: Split;
  heldoutFraction: number;
}

/** Index the shards (headers and captions only), then validate images. A corrupt shard throws TarFormatError. */
export async function openWebDataset(path: string, opts: WebDatasetOptions): Promise<Dataset> {
  const st = await stat(path).catch(() => null);
  if (!st) throw new DatasetNotFoundError('webdataset', path);
  // Shard names relative to `path`, so the heldout split does not change when the folder moves.
  const skipped: Record<string, number> = {};
  const names = st.isDirectory()
    ? (await listFiles(path, skipped)).filter((f) => f.endsWith('.tar'))
    : [basename(path)];
  const shards = st.isDirectory() ? names.map((f) => join(path, f)) : [path];
  if (shards.length === 0) throw new DatasetNotFoundError('webdataset', path, 'no .tar shards in the folder');
  const candidates: Candidate[] = [];
  const realRoot = st.isDirectory() ? await realpath(path) : undefined;
  for (const [s, shard] of shards.entries()) {
    // A symlinked shard is read only when its target stays inside the folder.
    if (realRoot && !(await realpath(shard)).startsWith(`${realRoot}/`)) {
      throw new DatasetFormatError('webdataset', path, `shard ${shard} is a symlink to outside the folder`);
    }
    const groups = new Map<string, { image?: TarMember; txt?: TarMember }>();
    for (const m of await listTar(shard)) {
      // Members are never extracted, but a name that would escape (absolute, `..`) is not a sample either.
      if (!safeEntryName(m.name)) {
        countSkip(skipped, SKIP_REASONS.outsideRoot);
        continue;
      }
      const { key, ext } = splitKey(m.name);
      const g = groups.get(key) ?? {};
      if (IMAGE_EXTENSIONS.includes(`.${ext}`) && g.image === undefined) g.image = m;
      else if (ext === 'txt') g.txt = m;
      groups.set(key, g);
    }
    const mine = [...groups].filter(
      ([key]) => keyFraction(`${names[s]}/${key}`) < opts.heldoutFraction === (opts.split === 'heldout'),
    );
    const texts = await readMembers(
      shard,
      mine.flatMap(([, g]) => (g.txt && g.image ? [g.txt] : [])),
    );
    for (const [key, { image, txt }] of mine) {
      if (image === undefined) {
        if (txt !== undefined) countSkip(skipped, SKIP_REASONS.missingImage);
        continue; // members of other kinds only (.json, .cls): not a sample we can use, nothing to report
      }
      const captions = txt === undefined ? null : parseCaptionLines(texts.get(txt)!.toString('utf8'));
      candidates.push({
        key: `${shard}:${key}`,
        captions: async () => captions,
        image: () => readTarMember(shard, image),
      });
    }
  }
  const ds = await openFileDataset('webdataset', opts.split, candidates, opts);
  for (const [k, v] of Object.entries(skipped)) ds.skipped[k] = (ds.skipped[k] ?? 0) + v;
  return ds;
}
