// Sample order for training: the sample stream is epoch after epoch, each epoch a permutation of the
// dataset that is a pure function of (seed, epoch). Position p of the stream is item
// epochOrder(seed, ⌊p/N⌋, N)[p mod N], so any position can be computed without replaying the past:
// that is what makes resume exact with the step as the only cursor.
import { rngFor } from '../random/index.ts';

const cache = new Map<string, Uint32Array>();
const CACHE_ENTRIES = 4; // a batch can straddle two epochs; keep a few so ranks in one process share them

/** The permutation of 0..n−1 used in `epoch` (Fisher–Yates keyed by (seed, 'order', epoch)); 4·n bytes. */
export function epochOrder(seed: number, epoch: number, n: number): Uint32Array {
  if (!Number.isInteger(n) || n < 1 || n > 0xffff_ffff)
    throw new RangeError(`dataset size must be an integer in [1, 2^32), got ${n}`);
  const key = `${seed}:${epoch}:${n}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const rng = rngFor(seed, 'order', epoch);
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  cache.set(key, perm);
  if (cache.size > CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
  return perm;
}

/** The item at stream position p: its epoch, its offset in that epoch, and the dataset index. */
export function itemAt(
  seed: number,
  position: number,
  n: number,
): { epoch: number; offset: number; index: number } {
  const epoch = Math.floor(position / n);
  const offset = position - epoch * n;
  return { epoch, offset, index: epochOrder(seed, epoch, n)[offset] };
}
