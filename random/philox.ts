// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), checked against
// Random123's known-answer vectors in philox.test.ts: the model's randomness (parameter init, Gumbel noise,
// sampling). Every number is a pure function of (seed, stream, step, rank, index), so a resumed run,
// another rank or another backend draws exactly the same numbers with no RNG state to checkpoint.
//
//   randomWords      philox key = [seed, stream], counter = [block, step, rank, 0]   (block = index / 4)
//   statelessWords   TensorFlow's stateless scheme: [seed, stream, step, rank] scrambled by one Philox call
//                    into a key and a counter (the Gumbel noise, which the native backend's kernel draws)
import { gumbelsFromWords, normalsFromWords, uniformsFromWords } from './distributions.ts';
import { RngKeyError } from './key-error.ts';

/** Stream ids, so different uses of the same (seed, step, rank) never share numbers. The ids are part of
 *  every run's numbers: never renumber one; a new use takes an id never used before (2, 3 and 4 were
 *  reserved once and are free). */
export const RngStream = {
  /** Parameter initialization (step = parameter index, rank = 0). */
  init: 0,
  /** dVAE Gumbel-softmax noise (rank = the sample's index in the step's global batch). */
  gumbel: 1,
  /** Sampling at inference (step = token position, rank = row). */
  sampling: 5,
  /** dVAE dead-code restarts (step = update, rank = restart index). */
  codeRestart: 6,
} as const;

export interface RngKey {
  /** Run seed (train.seed), a uint32. */
  seed: number;
  /** One of RngStream (or any uint32 agreed on). */
  stream: number;
  /** Training step (or another uint32 coordinate). */
  step: number;
  /** Data-parallel rank (or another uint32 coordinate). */
  rank: number;
}

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32 (exact: 16-bit limbs keep every product < 2^53). */
function mulhi(a: number, b: number): number {
  const aL = a & 0xffff;
  const aH = a >>> 16;
  const bL = b & 0xffff;
  const bH = b >>> 16;
  const lh = aL * bH;
  const hl = aH * bL;
  const mid = ((aL * bL) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (aH * bH + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/** Philox4x32-10 of one 4-word counter under a 2-word key, written into out[at..at+4). */
function philoxInto(
  c0: number,
  c1: number,
  c2: number,
  c3: number,
  k0: number,
  k1: number,
  out: Uint32Array,
  at: number,
): void {
  for (let r = 0; r < 10; r++) {
    if (r > 0) {
      k0 = (k0 + W0) >>> 0;
      k1 = (k1 + W1) >>> 0;
    }
    const hi0 = mulhi(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
  }
  out[at] = c0;
  out[at + 1] = c1;
  out[at + 2] = c2;
  out[at + 3] = c3;
}

/** Philox4x32-10 of one counter under one key (exposed for the known-answer test). */
export function philox4x32(counter: ArrayLike<number>, key: ArrayLike<number>): Uint32Array {
  const out = new Uint32Array(4);
  philoxInto(
    counter[0]! >>> 0,
    counter[1]! >>> 0,
    counter[2]! >>> 0,
    counter[3]! >>> 0,
    key[0]! >>> 0,
    key[1]! >>> 0,
    out,
    0,
  );
  return out;
}

function checkKey(key: RngKey): void {
  for (const f of ['seed', 'stream', 'step', 'rank'] as const) {
    const v = key[f];
    if (!(Number.isInteger(v) && v >= 0 && v < 2 ** 32))
      throw new RngKeyError(f, v, 'must be an integer in [0, 2^32)');
  }
}

/** `n` uniform uint32 words for `key`; word i depends only on (key, i). */
export function randomWords(key: RngKey, n: number): Uint32Array {
  checkKey(key);
  if (!(Number.isInteger(n) && n >= 0 && n <= 4 * 2 ** 32))
    throw new RangeError(`randomWords: n = ${n} out of range`);
  const blocks = Math.ceil(n / 4);
  const out = new Uint32Array(blocks * 4);
  for (let b = 0; b < blocks; b++) philoxInto(b, key.step, key.rank, 0, key.seed, key.stream, out, 4 * b);
  return n === out.length ? out : out.slice(0, n);
}

/** The key TensorFlow's stateless random ops scramble their seed with (GenerateKey). */
const TF_SEED_KEY = [0x3ec8f720, 0x02461e29] as const;

/** The int64 seed pair of `key` as four 32-bit words, low word first: (seed + 2^32·stream, step +
 *  2^32·rank). What `statelessWords` draws from, and what TensorFlow's stateless kernels are given. */
export function statelessSeed(key: RngKey): [number, number, number, number] {
  checkKey(key);
  return [key.seed, key.stream, key.step, key.rank];
}

/** `n` uint32 words for `key`, exactly as TensorFlow's stateless random ops (StatelessRandomUniformFullInt)
 *  draw them for `statelessSeed(key)`: one Philox call scrambles the seed into a key (its words 0, 1) and
 *  a counter's upper half (words 2, 3); word i is then word i % 4 of Philox at counter (⌊i/4⌋, 0, ·, ·).
 *  So the native backend's kernel and this function give the same words (gumbel.test.ts checks it). */
export function statelessWords(key: RngKey, n: number): Uint32Array {
  if (!(Number.isInteger(n) && n >= 0 && n <= 4 * 2 ** 32))
    throw new RangeError(`statelessWords: n = ${n} out of range`);
  const mix = new Uint32Array(4);
  const [c0, c1, c2, c3] = statelessSeed(key);
  philoxInto(c0, c1, c2, c3, TF_SEED_KEY[0], TF_SEED_KEY[1], mix, 0);
  const blocks = Math.ceil(n / 4);
  const out = new Uint32Array(blocks * 4);
  for (let b = 0; b < blocks; b++) philoxInto(b, 0, mix[2]!, mix[3]!, mix[0]!, mix[1]!, out, 4 * b);
  return n === out.length ? out : out.slice(0, n);
}

/** `n` float32 uniforms in the open interval (0, 1). */
export function uniforms(key: RngKey, n: number): Float32Array {
  return uniformsFromWords(randomWords(key, n));
}

/** `n` standard Gumbel(0, 1) samples, from the words TensorFlow's stateless kernel draws (`statelessWords`):
 *  the dVAE's noise (model/gumbel.ts). */
export function gumbels(key: RngKey, n: number): Float32Array {
  return gumbelsFromWords(statelessWords(key, n));
}

/** `n` standard normal samples (Box–Muller on pairs of words). */
export function normals(key: RngKey, n: number): Float32Array {
  return normalsFromWords(randomWords(key, n + (n & 1)), new Float32Array(n));
}
