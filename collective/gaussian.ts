// Standard normal numbers as a pure function of (seed, step, stream, index): every rank draws the same
// random Q for the same step with no RNG state to keep in sync or to checkpoint beyond the seed. A
// counter-based hash (lowbias32 mixing) feeds Box–Muller in float64.

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

/** Fills `out` with N(0, 1) samples determined by (seed, step, stream). */
export function fillGaussian(out: Float32Array, seed: number, step: number, stream: number): Float32Array {
  const key = mix32((seed >>> 0) ^ mix32((step >>> 0) ^ mix32((stream >>> 0) + 0x9e3779b9)));
  for (let i = 0; i < out.length; i += 2) {
    const h1 = mix32(key ^ mix32(i + 0x632be5ab));
    const h2 = mix32(key ^ mix32(i + 1 + 0x85ebca6b) ^ 0x5bd1e995);
    const u1 = (h1 + 0.5) / 4294967296; // (0, 1): log never sees 0
    const u2 = (h2 + 0.5) / 4294967296;
    const rad = Math.sqrt(-2 * Math.log(u1));
    out[i] = rad * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = rad * Math.sin(2 * Math.PI * u2);
  }
  return out;
}
