// A tiny container of named byte sections: checkpoint parts and model bundles are one object each, holding
// e.g. {spec.json, tokenizer.json, dvae, transformer}. Layout: magic, u32 header length, JSON header of
// {name, offset, length}, then the sections back to back. Truncation or a bad header is an error, never a
// silently short section.
const MAGIC = 'DALLESEC1';

export class BadContainerError extends Error {
  override name = 'BadContainerError';
}

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
  if (magic !== MAGIC) throw new BadContainerError(`not a section container (magic '${magic}')`);
  if (bytes.length < MAGIC.length + 4) throw new BadContainerError('truncated before the header');
  const hlen = new DataView(bytes.buffer, bytes.byteOffset).getUint32(MAGIC.length, true);
  const base = MAGIC.length + 4 + hlen;
  let header: { total: number; index: { name: string; offset: number; length: number }[] };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(MAGIC.length + 4, base)));
  } catch (e) {
    throw new BadContainerError(`unreadable header: ${(e as Error).message}`);
  }
  if (bytes.length !== base + header.total) {
    throw new BadContainerError(
      `size ${bytes.length} does not match the header's ${base + header.total} (truncated?)`,
    );
  }
  const out: Record<string, Uint8Array> = {};
  for (const { name, offset, length } of header.index)
    out[name] = bytes.subarray(base + offset, base + offset + length);
  return out;
}
