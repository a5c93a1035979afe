// Orthonormal basis of the columns of a tall matrix by Householder QR (docs/model.md: Gram-Schmidt is
// numerically unstable). Gram-Schmidt's loss of orthogonality grows with κ(P)²; Householder's stays at
// machine precision whatever the conditioning, which matters because P = M·Q of a gradient with a few
// dominant directions is exactly the ill-conditioned case. Computed in float64, returned as float32.

/** Q [n, r] (row-major) with orthonormal columns spanning the columns of P [n, r]; requires n ≥ r.
 *  Deterministic: the same P gives the same bits. Zero columns yield the corresponding unit vectors
 *  (a reflector of a zero vector is the identity). */
export function orthonormalize(
  P: Float32Array,
  n: number,
  r: number,
  out = new Float32Array(n * r),
): Float32Array {
  if (P.length !== n * r) throw new RangeError(`orthonormalize: P has ${P.length} values, not ${n}×${r}`);
  if (r > n) throw new RangeError(`orthonormalize: needs n ≥ r, got ${n}×${r}`);
  if (out.length !== n * r)
    throw new RangeError(`orthonormalize: out has ${out.length} values, not ${n}×${r}`);
  const A = Float64Array.from(P); // [n, r], overwritten by R above the diagonal
  const vs: Float64Array[] = [];
  const betas = new Float64Array(r);
  const s = new Float64Array(r);
  for (let k = 0; k < r; k++) {
    // reflector that maps A[k:, k] onto a multiple of e_k
    let norm2 = 0;
    for (let i = k; i < n; i++) norm2 += A[i * r + k]! ** 2;
    const x0 = A[k * r + k]!;
    const alpha = -(x0 >= 0 ? 1 : -1) * Math.sqrt(norm2); // opposite sign of x0: no cancellation
    const v = new Float64Array(n - k);
    for (let i = k; i < n; i++) v[i - k] = A[i * r + k]!;
    v[0] = x0 - alpha;
    let vv = 0;
    for (let i = 0; i < v.length; i++) vv += v[i]! * v[i]!;
    vs.push(v);
    if (vv === 0) continue; // zero column: identity
    const beta = 2 / vv;
    betas[k] = beta;
    // A[k:, k:] -= beta v (vᵀ A[k:, k:]), row-major friendly: s = vᵀA first, then the rank-1 update
    s.fill(0, k, r);
    for (let i = k; i < n; i++) {
      const vi = v[i - k]!;
      const row = i * r;
      for (let j = k; j < r; j++) s[j]! += vi * A[row + j]!;
    }
    for (let i = k; i < n; i++) {
      const f = beta * v[i - k]!;
      const row = i * r;
      for (let j = k; j < r; j++) A[row + j]! -= f * s[j]!;
    }
  }
  // Q = H_0 H_1 … H_{r-1} [I_r; 0]: apply the reflectors to the first r columns of I, last one first.
  const Q = new Float64Array(n * r);
  for (let j = 0; j < r; j++) Q[j * r + j] = 1;
  for (let k = r - 1; k >= 0; k--) {
    const beta = betas[k]!;
    if (beta === 0) continue;
    const v = vs[k]!;
    s.fill(0);
    for (let i = k; i < n; i++) {
      const vi = v[i - k]!;
      const row = i * r;
      for (let j = 0; j < r; j++) s[j]! += vi * Q[row + j]!;
    }
    for (let i = k; i < n; i++) {
      const f = beta * v[i - k]!;
      const row = i * r;
      for (let j = 0; j < r; j++) Q[row + j]! -= f * s[j]!;
    }
  }
  for (let i = 0; i < Q.length; i++) out[i] = Q[i]!;
  return out;
}
