// Paths that come from a dataset's own files (COCO `file_name`, CUB `images.txt`, tar member names,
// symlinks in a folder) are data, not trusted: none may lead outside the dataset root. A relative path is
// checked lexically; a symlink is followed only when its real target stays inside the root's real path.
import { readFile, realpath } from 'node:fs/promises';
import { isAbsolute, relative, resolve, sep } from 'node:path';

/** A path from a dataset's files would leave the dataset root (counted as skip reason `outside-root`). */
export class OutsideRootError extends Error {
  override name = 'OutsideRootError';
  constructor(
    readonly root: string,
    readonly path: string,
  ) {
    super(`${path} lies outside the dataset root ${root}`);
  }
}

function within(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** `rel` under `root`, or undefined when it is absolute or climbs out with `..`. */
export function joinInside(root: string, rel: string): string | undefined {
  if (!rel || isAbsolute(rel) || rel.includes('\0')) return undefined;
  const p = resolve(root, rel);
  return within(resolve(root), p) ? p : undefined;
}

/** A member or entry name (`a/b.jpg`) that stays inside whatever holds it: relative, no `..` segment. */
export function safeEntryName(name: string): boolean {
  return !!name && !name.startsWith('/') && !name.includes('\0') && !name.split(/[\\/]/).includes('..');
}

/** The file's bytes (null when absent) once its real path is known to stay inside `root`; a symlink out
 *  of the root throws OutsideRootError. */
export async function readInside(root: string, path: string): Promise<Buffer | null> {
  let real: string;
  try {
    real = await realpath(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  if (!within(await realpath(root), real)) throw new OutsideRootError(root, path);
  return readFile(real);
}
