// Serialize named Float32Arrays plus a JSON header into one verified byte blob, and back. Both stages'
// saveState/loadState use it, so a checkpoint part is a single Uint8Array the store can hash and ship.
//
// Layout (all integers little-endian):
//   0   4 bytes  magic "DLST"
//   4   u32      format version (1)
//   8   u32      header length H in bytes (UTF-8 JSON)
//   12  H bytes  header: { meta, arrays: [{ name, length }], sha256 } (sha256 of the payload, hex)
//   ..  padding  zeros up to a multiple of 4, so the payload can be viewed as float32 in place
//   ..  payload  the arrays' float32 values, back to back, in header order
import { createHash } from 'node:crypto';

const MAGIC = 0x54534c44; // "DLST" read as a little-endian u32
const VERSION = 1;
const PREFIX_BYTES = 12;

if (new Uint8Array(new Uint32Array([1]).buffer)[0] !== 1) {
  // The payload is the raw bytes of Float32Arrays; every machine we run on is little-endian.
  throw new Error('model/state-io.ts assumes a little-endian machine');
}

/** The blob is not a state blob, is truncated, or has a malformed header. */
export class StateFormatError extends Error {
  override name = 'StateFormatError';
  /** Damaged or forged data (a service answers DATA_LOSS). */
  readonly corrupt = true;
  constructor(
    readonly reason: string,
    readonly bytes: number,
  ) {
    super(`not a valid state blob (${bytes} bytes): ${reason}`);
  }
}

/** The payload's sha256 differs from the one recorded in the header: the bytes were corrupted. */
export class StateChecksumError extends Error {
  override name = 'StateChecksumError';
  readonly corrupt = true;
  constructor(
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`state payload checksum mismatch: header says sha256 ${expected}, payload hashes to ${actual}`);
  }
}

/** Arrays expected by a loader are missing, unexpected or of the wrong length. */
export class StateMismatchError extends Error {
  override name = 'StateMismatchError';
  readonly fatal = true;
  constructor(readonly problems: string[]) {
    super(`state does not fit this model:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

export interface DecodedState<Meta = Record<string, unknown>> {
  meta: Meta;
  /** Arrays in the order they were encoded. Views share no memory with the input blob. */
  arrays: Map<string, Float32Array>;
}

interface Header {
  meta: unknown;
  arrays: { name: string; length: number }[];
  sha256: string;
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** Encodes `arrays` (name → values, order kept) with a JSON-serializable `meta` into one blob. */
export function encodeState(
  meta: Record<string, unknown>,
  arrays: Iterable<readonly [string, Float32Array]>,
): Uint8Array {
  const entries = [...arrays];
  const seen = new Set<string>();
  let floats = 0;
  for (const [name, data] of entries) {
    if (seen.has(name)) throw new StateFormatError(`duplicate array name "${name}"`, 0);
    if (!(data instanceof Float32Array))
      throw new StateFormatError(`array "${name}" is not a Float32Array`, 0);
    seen.add(name);
    floats += data.length;
  }
  const payload = new Uint8Array(floats * 4);
  const payloadF32 = new Float32Array(payload.buffer);
  let at = 0;
  for (const [, data] of entries) {
    payloadF32.set(data, at);
    at += data.length;
  }
  const header: Header = {
    meta,
    arrays: entries.map(([name, data]) => ({ name, length: data.length })),
    sha256: sha256Hex(payload),
  };
  const headerBytes = new TextEncoder().encode(JSON.stringify(header));
  const payloadAt = align4(PREFIX_BYTES + headerBytes.length);
  const out = new Uint8Array(payloadAt + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, VERSION, true);
  view.setUint32(8, headerBytes.length, true);
  out.set(headerBytes, PREFIX_BYTES);
  out.set(payload, payloadAt);
  return out;
}

/** Decodes and verifies a blob from `encodeState`; throws StateFormatError or StateChecksumError. */
export function decodeState<Meta = Record<string, unknown>>(bytes: Uint8Array): DecodedState<Meta> {
  if (!(bytes instanceof Uint8Array)) throw new StateFormatError('input is not a Uint8Array', 0);
  const n = bytes.length;
  if (n < PREFIX_BYTES) throw new StateFormatError('shorter than the 12-byte prefix', n);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== MAGIC) throw new StateFormatError('bad magic (expected "DLST")', n);
  const version = view.getUint32(4, true);
  if (version !== VERSION)
    throw new StateFormatError(`unsupported format version ${version} (this code reads ${VERSION})`, n);
  const headerLen = view.getUint32(8, true);
  if (PREFIX_BYTES + headerLen > n)
    throw new StateFormatError(`header of ${headerLen} bytes runs past the end`, n);
  let header: Header;
  try {
    header = JSON.parse(
      new TextDecoder('utf-8', { fatal: true }).decode(
        bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLen),
      ),
    );
  } catch (e) {
    throw new StateFormatError(`header is not valid UTF-8 JSON: ${(e as Error).message}`, n);
  }
  if (
    typeof header !== 'object' ||
    header === null ||
    !Array.isArray(header.arrays) ||
    typeof header.sha256 !== 'string' ||
    !header.arrays.every((a) => typeof a?.name === 'string' && Number.isInteger(a?.length) && a.length >= 0)
  ) {
    throw new StateFormatError('header lacks arrays[{name, length}] or sha256', n);
  }
  const payloadAt = align4(PREFIX_BYTES + headerLen);
  const floats = header.arrays.reduce((s, a) => s + a.length, 0);
  if (payloadAt + floats * 4 !== n) {
    throw new StateFormatError(
      `payload should be ${floats * 4} bytes at offset ${payloadAt}, blob has ${n - payloadAt}`,
      n,
    );
  }
  // Copy so the result is aligned and independent of the caller's buffer. Uint8Array's own slice: a Node
  // Buffer's slice is a view into its pool, and reading floats from that view's buffer is silently wrong.
  const payload = Uint8Array.prototype.slice.call(bytes, payloadAt);
  const actual = sha256Hex(payload);
  if (actual !== header.sha256) throw new StateChecksumError(header.sha256, actual);
  const all = new Float32Array(payload.buffer);
  const arrays = new Map<string, Float32Array>();
  let at = 0;
  for (const { name, length } of header.arrays) {
    if (arrays.has(name)) throw new StateFormatError(`duplicate array name "${name}"`, n);
    arrays.set(name, all.subarray(at, at + length));
    at += length;
  }
  return { meta: header.meta as Meta, arrays };
}

/** Checks that `arrays` holds exactly the `expected` names with these lengths; throws StateMismatchError listing every problem. */
export function expectArrays(
  arrays: Map<string, Float32Array>,
  expected: Iterable<readonly [string, number]>,
): void {
  const problems: string[] = [];
  const want = new Map(expected);
  for (const [name, length] of want) {
    const got = arrays.get(name);
    if (!got) problems.push(`missing array "${name}" (${length} values)`);
    else if (got.length !== length)
      problems.push(`array "${name}" has ${got.length} values, expected ${length}`);
  }
  for (const name of arrays.keys()) if (!want.has(name)) problems.push(`unexpected array "${name}"`);
  if (problems.length > 0) throw new StateMismatchError(problems);
}

function align4(n: number): number {
  return (n + 3) & ~3;
}
