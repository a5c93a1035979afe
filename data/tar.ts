// A minimal tar writer and reader for WebDataset shards (no tar package is installed, and we need only
// regular files). Reads POSIX ustar, GNU long names ('L') and pax extended headers ('x': path, size);
// writes ustar, falling back to a pax header when a name does not fit. Reading is by positional reads of
// headers only, so indexing a multi-GB shard costs one 512-byte read per member.
import { open, writeFile } from 'node:fs/promises';

const BLOCK = 512;

/** A shard that is not a readable tar archive (bad checksum, truncated member, bad number field). */
export class TarFormatError extends Error {
  override name = 'TarFormatError';
  constructor(
    readonly path: string,
    readonly offset: number,
    readonly problem: string,
  ) {
    super(`${path}: not a valid tar archive at byte ${offset}: ${problem}`);
  }
}

/** A member name the writer cannot store. */
export class TarNameError extends Error {
  override name = 'TarNameError';
  constructor(readonly entryName: string) {
    super(`tar member name must be non-empty and relative, without NUL: ${JSON.stringify(entryName)}`);
  }
}

export interface TarEntry {
  /** Relative path inside the archive, '/'-separated. */
  name: string;
  data: Uint8Array;
  /** Seconds since the epoch (default 0, so archives are byte-reproducible). */
  mtime?: number;
}

/** One regular file inside an archive. */
export interface TarMember {
  name: string;
  /** Byte offset of the member's data in the archive file. */
  offset: number;
  size: number;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

function writeString(block: Uint8Array, at: number, len: number, s: string): void {
  const b = enc.encode(s);
  if (b.length > len) throw new RangeError(`tar field of ${len} bytes cannot hold ${JSON.stringify(s)}`);
  block.set(b, at);
}

function writeOctal(block: Uint8Array, at: number, len: number, value: number): void {
  // len−1 octal digits, then NUL; the portable form for sizes below 8 GiB.
  writeString(block, at, len, value.toString(8).padStart(len - 1, '0') + '\0');
}

function header(name: string, size: number, mtime: number, type: string): Uint8Array {
  const h = new Uint8Array(BLOCK);
  writeString(h, 0, 100, name);
  writeOctal(h, 100, 8, 0o644);
  writeOctal(h, 108, 8, 0);
  writeOctal(h, 116, 8, 0);
  writeOctal(h, 124, 12, size);
  writeOctal(h, 136, 12, mtime);
  h.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  writeString(h, 156, 1, type);
  writeString(h, 257, 6, 'ustar\0');
  writeString(h, 263, 2, '00');
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i];
  writeString(h, 148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
  return h;
}

function padded(n: number): number {
  return Math.ceil(n / BLOCK) * BLOCK;
}

function paxRecord(key: string, value: string): string {
  // "<len> <key>=<value>\n" where <len> counts itself.
  const body = ` ${key}=${value}\n`;
  let len = enc.encode(body).length + 1;
  while (String(len).length + enc.encode(body).length !== len) len++;
  return `${len}${body}`;
}

/** The bytes of a tar archive holding `entries` in order (ustar; pax header for names over 100 bytes). */
export function tarBytes(entries: TarEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    if (!e.name || e.name.startsWith('/') || e.name.includes('\0')) throw new TarNameError(e.name);
    const mtime = e.mtime ?? 0;
    let name = e.name;
    if (enc.encode(name).length > 100) {
      const pax = enc.encode(paxRecord('path', name));
      parts.push(
        header('PaxHeader', pax.length, mtime, 'x'),
        pax,
        new Uint8Array(padded(pax.length) - pax.length),
      );
      name = name.slice(-90).replace(/^[^/]*\//, '') || 'long-name'; // readers without pax still get a hint
      while (enc.encode(name).length > 100) name = name.slice(1);
    }
    parts.push(
      header(name, e.data.length, mtime, '0'),
      e.data,
      new Uint8Array(padded(e.data.length) - e.data.length),
    );
  }
  parts.push(new Uint8Array(2 * BLOCK));
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Write `entries` as a tar archive at `path`. */
export async function writeTar(path: string, entries: TarEntry[]): Promise<void> {
  await writeFile(path, tarBytes(entries));
}

function cString(b: Uint8Array, at: number, len: number): string {
  let end = at;
  while (end < at + len && b[end] !== 0) end++;
  return dec.decode(b.subarray(at, end));
}

function parseNumber(b: Uint8Array, at: number, len: number, path: string, offset: number): number {
  if (b[at] & 0x80) {
    // GNU base-256: big-endian two's complement in the remaining bits. Negative (bit 6 set) is never a
    // size or a checksum: it would walk the reader backwards, and a loop is the result.
    if (b[at] & 0x40) throw new TarFormatError(path, offset, 'negative base-256 number field');
    let v = b[at] & 0x3f;
    for (let i = 1; i < len; i++) v = v * 256 + b[at + i];
    if (!Number.isSafeInteger(v)) throw new TarFormatError(path, offset, 'base-256 number field too large');
    return v;
  }
  const s = cString(b, at, len).trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s))
    throw new TarFormatError(path, offset, `number field ${JSON.stringify(s)} is not octal`);
  return parseInt(s, 8);
}

function parsePax(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  const text = dec.decode(data);
  let i = 0;
  while (i < text.length) {
    const sp = text.indexOf(' ', i);
    if (sp < 0) break;
    const len = parseInt(text.slice(i, sp), 10);
    if (!(len > 0)) break;
    // len counts bytes; for ASCII keys/values (all we rely on) bytes equal UTF-16 units.
    const rec = text.slice(sp + 1, i + len - 1);
    const eq = rec.indexOf('=');
    if (eq > 0) out[rec.slice(0, eq)] = rec.slice(eq + 1);
    i += len;
  }
  return out;
}

/** Regular-file members of the archive at `path`, in archive order, with pax and GNU long names resolved.
 *  Throws TarFormatError on a corrupt header or a member running past the end of the file. */
export async function listTar(path: string): Promise<TarMember[]> {
  const fh = await open(path, 'r');
  try {
    const { size: fileSize } = await fh.stat();
    const members: TarMember[] = [];
    const h = new Uint8Array(BLOCK);
    let offset = 0;
    let longName: string | null = null;
    let pax: Record<string, string> = {};
    while (offset + BLOCK <= fileSize) {
      const { bytesRead } = await fh.read(h, 0, BLOCK, offset);
      if (bytesRead < BLOCK) throw new TarFormatError(path, offset, 'truncated header');
      if (h.every((x) => x === 0)) break; // end-of-archive marker
      let sum = 0;
      for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
      const stored = parseNumber(h, 148, 8, path, offset);
      if (stored !== sum)
        throw new TarFormatError(path, offset, `header checksum ${stored} ≠ computed ${sum}`);
      const type = String.fromCharCode(h[156] || 0x30);
      let size = parseNumber(h, 124, 12, path, offset);
      if (pax.size !== undefined && type !== 'x' && type !== 'L') {
        // A pax size is decimal digits only; anything else ('-512', '1e3', 'abc') would move the reader
        // backwards or nowhere.
        if (!/^\d{1,15}$/.test(pax.size))
          throw new TarFormatError(path, offset, `pax size ${JSON.stringify(pax.size)} is not a byte count`);
        size = Number(pax.size);
      }
      const dataAt = offset + BLOCK;
      if (dataAt + size > fileSize)
        throw new TarFormatError(path, offset, `member of ${size} bytes runs past the end of the file`);
      if (type === 'L' || type === 'x') {
        const data = new Uint8Array(size);
        await fh.read(data, 0, size, dataAt);
        if (type === 'L') longName = cString(data, 0, size);
        else pax = { ...pax, ...parsePax(data) };
      } else if (type === 'g' || type === 'K') {
        // global pax header / GNU long link name: nothing we use
      } else {
        const magic = cString(h, 257, 6);
        const prefix = magic === 'ustar' ? cString(h, 345, 155) : ''; // GNU ('ustar  ') reuses these bytes
        const name =
          pax.path ?? longName ?? (prefix ? `${prefix}/${cString(h, 0, 100)}` : cString(h, 0, 100));
        if (type === '0' || type === '7') members.push({ name, offset: dataAt, size });
        longName = null;
        pax = {};
      }
      const next = dataAt + padded(size);
      if (!(next > offset)) throw new TarFormatError(path, offset, 'the archive does not advance'); // belt and braces
      offset = next;
    }
    return members;
  } finally {
    await fh.close();
  }
}

/** The bytes of one member (as listed by `listTar`). */
export async function readTarMember(path: string, member: TarMember): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(member.size);
    const { bytesRead } = await fh.read(buf, 0, member.size, member.offset);
    if (bytesRead !== member.size)
      throw new TarFormatError(path, member.offset, `member ${member.name} is truncated`);
    return buf;
  } finally {
    await fh.close();
  }
}
