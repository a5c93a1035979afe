// The collective's Gaussian stream: PowerSGD draws the same random Q on every rank for the same step with
// no state to keep in sync. A counter hash (lowbias32 mixing) of (seed, step, stream, index) feeds the
// shared Box–Muller. PowerSGD's saved state records GAUSSIAN_GENERATOR and refuses another.
import { normalsFromWords } from './distributions.ts';

/** Identifies the generator in saved state; change it whenever the numbers would change. */
export const GAUSSIAN_GENERATOR = 'lowbias32-boxmuller/1';

function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Words for `n` normals (rounded up to pairs): even and odd words of a pair hash differently. */
function lowbiasWords(seed: number, step: number, stream: number, n: number): Uint32Array {
  const key = mix32((seed >>> 0) ^ mix32((step >>> 0) ^ mix32((stream >>> 0) + 0x9e3779b9)));
  const w = new Uint32Array(n + (n & 1));
  for (let i = 0; i < n; i += 2) {
    w[i] = mix32(key ^ mix32(i + 0x632be5ab));
    w[i + 1] = mix32(key ^ mix32(i + 1 + 0x85ebca6b) ^ 0x5bd1e995);
  }
  return w;
}

/** Fills `out` with N(0, 1) samples determined by (seed, step, stream). */
export function fillGaussian(out: Float32Array, seed: number, step: number, stream: number): Float32Array {
  return normalsFromWords(lowbiasWords(seed, step, stream, out.length), out);
}
