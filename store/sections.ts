// A tiny container of named byte sections: checkpoint parts and model bundles are one object each, holding
// e.g. {spec.json, tokenizer.json, dvae, transformer}. Layout: magic, u32 header length, JSON header of
// {name, offset, length}, then the sections back to back. Truncation or a bad header is an error, never a
// silently short section: every length, offset and name of the index is checked before a byte is sliced.
import { z } from 'zod';

const MAGIC = 'DALLESEC1';
/** Far above any real index (a few sections); a larger header is corruption, not a bigger model. */
const MAX_HEADER_BYTES = 1 << 20;

/** The bytes are not a well-formed container (or a well-formed container of something else). `corrupt`:
 *  the data is damaged or forged, so a reader answers DATA_LOSS, not an internal error. */
export class BadContainerError extends Error {
  override name = 'BadContainerError';
  readonly corrupt = true;
}

const Header = z.strictObject({
  total: z.number().int().nonnegative(),
  index: z
    .array(
      z.strictObject({
        name: z.string().min(1).max(256),
        offset: z.number().int().nonnegative(),
        length: z.number().int().nonnegative(),
      }),
    )
    .max(1024),
});

export function packSections(sections: Record<string, Uint8Array>): Uint8Array {
  const index: { name: string; offset: number; length: number }[] = [];
  let offset = 0;
  for (const [name, bytes] of Object.entries(sections)) {
    index.push({ name, offset, length: bytes.length });
    offset += bytes.length;
  }
  const header = new TextEncoder().encode(JSON.stringify({ total: offset, index }));
  const magic = new TextEncoder().encode(MAGIC);
  const out = new Uint8Array(magic.length + 4 + header.length + offset);
  out.set(magic, 0);
  new DataView(out.buffer).setUint32(magic.length, header.length, true);
  out.set(header, magic.length + 4);
  const base = magic.length + 4 + header.length;
  for (const { name, offset: o } of index) out.set(sections[name]!, base + o);
  return out;
}

export function unpackSections(bytes: Uint8Array): Record<string, Uint8Array> {
  const magic = new TextDecoder().decode(bytes.subarray(0, MAGIC.length));
  if (magic !== MAGIC)
    throw new BadContainerError(`not a section container (magic ${JSON.stringify(magic)})`);
  if (bytes.length < MAGIC.length + 4) throw new BadContainerError('truncated before the header');
  const hlen = new DataView(bytes.buffer, bytes.byteOffset).getUint32(MAGIC.length, true);
  const base = MAGIC.length + 4 + hlen;
  if (hlen > MAX_HEADER_BYTES || base > bytes.length)
    throw new BadContainerError(`header length ${hlen} runs past the ${bytes.length}-byte container`);
  let raw: unknown;
  try {
    raw = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(MAGIC.length + 4, base)),
    );
  } catch (e) {
    throw new BadContainerError(`unreadable header: ${(e as Error).message}`);
  }
  const parsed = Header.safeParse(raw);
  if (!parsed.success)
    throw new BadContainerError(
      `malformed header: ${parsed.error.issues[0]!.path.join('.')}: ${parsed.error.issues[0]!.message}`,
    );
  const header = parsed.data;
  if (bytes.length !== base + header.total) {
    throw new BadContainerError(
      `size ${bytes.length} does not match the header's ${base + header.total} (truncated?)`,
    );
  }
  const out: Record<string, Uint8Array> = {};
  let end = 0;
  for (const { name, offset, length } of header.index) {
    if (Object.hasOwn(out, name)) throw new BadContainerError(`section '${name}' appears twice in the index`);
    // Sections lie back to back in index order: no overlap, no gap, nothing past the end.
    if (offset !== end || offset + length > header.total)
      throw new BadContainerError(
        `section '${name}' at offset ${offset} (+${length}) does not follow the previous one (${end}) within ${header.total} bytes`,
      );
    out[name] = bytes.subarray(base + offset, base + offset + length);
    end = offset + length;
  }
  if (end !== header.total) throw new BadContainerError(`sections cover ${end} of ${header.total} bytes`);
  return out;
}
