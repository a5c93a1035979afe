// PowerSGD's checkpoint part: a JSON header and named float32 arrays (error buffers, warm-start Q) in one
// verified blob. Layout (little-endian):
//   0   4 bytes  magic "DPSG"
//   4   u32      format version (1)
//   8   u32      header length H
//   12  H bytes  UTF-8 JSON: { meta, arrays: [{ name, length }], sha256 } (sha256 of the payload, hex)
//   ..  zeros    up to a multiple of 4
//   ..  payload  the arrays' float32 values back to back, in header order
import { createHash } from 'node:crypto';
import { PowerSgdStateError } from './errors.ts';

const MAGIC = 0x47535044; // "DPSG" as a little-endian u32
const VERSION = 1;

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1)
  throw new Error('collective/ assumes a little-endian machine');

export interface StateBlob<M> {
  meta: M;
  arrays: Map<string, Float32Array>;
}

export function encodeState<M>(meta: M, arrays: [string, Float32Array][]): Uint8Array {
  const hash = createHash('sha256');
  let payloadBytes = 0;
  for (const [, a] of arrays) {
    hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    payloadBytes += a.byteLength;
  }
  const header = new TextEncoder().encode(
    JSON.stringify({
      meta,
      arrays: arrays.map(([name, a]) => ({ name, length: a.length })),
      sha256: hash.digest('hex'),
    }),
  );
  const start = Math.ceil((12 + header.length) / 4) * 4;
  const out = new Uint8Array(start + payloadBytes);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, MAGIC, true);
  dv.setUint32(4, VERSION, true);
  dv.setUint32(8, header.length, true);
  out.set(header, 12);
  let off = start;
  for (const [, a] of arrays) {
    out.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), off);
    off += a.byteLength;
  }
  return out;
}

export function decodeState<M>(bytes: Uint8Array): StateBlob<M> {
  const fail = (reason: string) => new PowerSgdStateError(reason, bytes?.length ?? 0);
  if (!(bytes instanceof Uint8Array)) throw fail('not a Uint8Array');
  if (bytes.length < 12) throw fail('shorter than the 12-byte prefix');
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (dv.getUint32(0, true) !== MAGIC) throw fail('wrong magic (not a PowerSGD state blob)');
  const version = dv.getUint32(4, true);
  if (version !== VERSION) throw fail(`format version ${version}, this build reads ${VERSION}`);
  const hlen = dv.getUint32(8, true);
  if (12 + hlen > bytes.length) throw fail('truncated header');
  let header: { meta: M; arrays: { name: string; length: number }[]; sha256: string };
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hlen))) as typeof header;
  } catch (e) {
    throw fail(`header is not JSON: ${(e as Error).message}`);
  }
  const start = Math.ceil((12 + hlen) / 4) * 4;
  for (let i = 12 + hlen; i < Math.min(start, bytes.length); i++)
    if (bytes[i] !== 0) throw fail('non-zero padding (corrupt blob)');
  const total = header.arrays.reduce((s, a) => s + a.length * 4, 0);
  if (start + total !== bytes.length)
    throw fail(`payload is ${bytes.length - start} bytes, header lists ${total}`);
  const payload = new Uint8Array(bytes.subarray(start)); // an aligned copy (Buffer#slice would be a view)
  const digest = createHash('sha256').update(payload).digest('hex');
  if (digest !== header.sha256) throw fail('sha256 mismatch (corrupt blob)');
  const arrays = new Map<string, Float32Array>();
  let off = 0;
  for (const a of header.arrays) {
    arrays.set(a.name, new Float32Array(payload.buffer, off, a.length));
    off += a.length * 4;
  }
  return { meta: header.meta, arrays };
}
