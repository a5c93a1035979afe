// Keyed streams for the data pipeline and the evaluation: every random choice (order, crops, flips,
// caption draws, BPE dropout) comes from a generator keyed by integers and tags the caller already has
// (seed, epoch, step, sample position), so a resumed run needs no generator state beyond the step, and any
// rank can recompute any other rank's choices. The key is hashed into sfc32's 128-bit state.
import { RngKeyError } from './key-error.ts';

/** A seeded stream of uniform numbers. Deterministic: the same key gives the same stream everywhere. */
export interface Rng {
  /** Uniform uint32 in [0, 2^32). */
  uint32(): number;
  /** Uniform float in [0, 1) with 32 random bits. */
  next(): number;
  /** Uniform integer in {0, …, n−1} (unbiased); n must be a positive safe integer ≤ 2^32. Always consumes ≥ 1 draw. */
  int(n: number): number;
}

/** A part of an RNG key: non-negative safe integers or short domain tags such as 'order' or 'crop'. */
export type KeyPart = number | string;

// murmur3's 32-bit finalizer: full avalanche, so neighbouring keys give unrelated streams.
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The 32-bit words a key part contributes: two for a number (hi, lo: exact up to 2^53), its UTF-16 units for a string. */
function words(part: KeyPart): number[] {
  if (typeof part === 'string') {
    const out = [0x5354_5200 ^ part.length];
    for (let i = 0; i < part.length; i++) out.push(part.charCodeAt(i));
    return out;
  }
  if (!Number.isSafeInteger(part) || part < 0)
    throw new RngKeyError('part', part, 'must be a non-negative safe integer or a string');
  return [Math.floor(part / 0x1_0000_0000) >>> 0, part >>> 0];
}

/** Hash a key into one uint32 (e.g. to derive the `seed` of `Tokenizer.encode` from (trainSeed, step, sample)). */
export function mixSeed(...parts: KeyPart[]): number {
  return hashKey(parts, 0x9e3779b9);
}

function hashKey(parts: KeyPart[], lane: number): number {
  let h = lane >>> 0;
  for (const p of parts) {
    for (const w of words(p)) {
      h = fmix32((h ^ Math.imul(w >>> 0, 0xcc9e2d51)) + 0x6b43a9b5);
      h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
    }
    h = fmix32(h ^ 0x27d4eb2f); // separates [1, 23] from [12, 3]
  }
  return fmix32(h ^ parts.length);
}

/** sfc32 (Chris Doty-Humphrey's small fast counting generator): 128-bit state, passes PractRand at this size. */
class Sfc32 implements Rng {
  constructor(
    private a: number,
    private b: number,
    private c: number,
    private d: number,
  ) {
    for (let i = 0; i < 12; i++) this.uint32(); // warm up so weak keys do not show in the first outputs
  }

  uint32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  next(): number {
    return this.uint32() / 0x1_0000_0000;
  }

  int(n: number): number {
    if (!Number.isSafeInteger(n) || n < 1 || n > 0x1_0000_0000) {
      throw new RangeError(`rng.int(n) needs an integer n in [1, 2^32], got ${n}`);
    }
    // Rejection sampling: draws at or above the largest multiple of n would bias small values.
    const limit = 0x1_0000_0000 - (0x1_0000_0000 % n);
    for (;;) {
      const u = this.uint32();
      if (u < limit) return u % n;
    }
  }
}

/** A generator keyed by `parts`, e.g. `rngFor(seed, 'crop', position)`. Same key ⇒ same stream. */
export function rngFor(...parts: KeyPart[]): Rng {
  return new Sfc32(
    hashKey(parts, 0x243f6a88),
    hashKey(parts, 0x85a308d3),
    hashKey(parts, 0x13198a2e),
    hashKey(parts, 0x03707344),
  );
}
