// Uniform uint32 words → the distributions the project draws from. Shared by every word source, so a
// float conversion or Box–Muller exists once; the formulas are part of what makes a run reproducible
// (random.test.ts pins their output): a change means a run resumed across it draws other numbers from then on.

const TWO_32 = 4294967296;

/** Float32 uniforms in the open interval (0, 1): (2k+1)/2^24 for the top 23 bits k, exact in float32. */
export function uniformsFromWords(w: Uint32Array, n = w.length): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = ((w[i]! >>> 9) * 2 + 1) / 16777216;
  return out;
}

/** Standard Gumbel(0, 1): −log(−log u), u = (k + ½)/2^24 for the top 24 bits k of each word (float64
 *  math). 24 bits, not 32: u is then exact in float32 (as u below ½, as −(1 − u) above it), so a backend
 *  builds it from the word with integer ops and one exact float conversion (model/gumbel.ts); the tails
 *  it cuts (g above 17.3, below −2.85) have probability ~3·10⁻⁸ each per draw. */
export function gumbelsFromWords(w: Uint32Array, n = w.length): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = -Math.log(-Math.log(((w[i]! >>> 8) + 0.5) / 16777216));
  return out;
}

/** Standard normals by Box–Muller on word pairs (2i, 2i+1), float64 math, into `out` (w holds ≥ an even
 *  number of words covering out). u = (k + ½)/2^32 keeps log away from 0. */
export function normalsFromWords(w: Uint32Array, out: Float32Array): Float32Array {
  for (let i = 0; i < out.length; i += 2) {
    const u1 = (w[i]! + 0.5) / TWO_32;
    const u2 = (w[i + 1]! + 0.5) / TWO_32;
    const r = Math.sqrt(-2 * Math.log(u1));
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
  return out;
}
