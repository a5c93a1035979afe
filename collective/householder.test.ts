import { test } from 'node:test';
import assert from 'node:assert/strict';
import { orthonormalize } from './householder.ts';

/** max |(QᵀQ − I)_ij| */
function orthogonalityError(Q: Float32Array, n: number, r: number): number {
  let worst = 0;
  for (let a = 0; a < r; a++) {
    for (let b = 0; b < r; b++) {
      let d = 0;
      for (let i = 0; i < n; i++) d += Q[i * r + a]! * Q[i * r + b]!;
      worst = Math.max(worst, Math.abs(d - (a === b ? 1 : 0)));
    }
  }
  return worst;
}

/** Classical Gram-Schmidt in float32, the textbook algorithm the paper warns against. */
function classicalGramSchmidt(P: Float32Array, n: number, r: number): Float32Array {
  const Q = new Float32Array(n * r);
  const v = new Float32Array(n);
  for (let j = 0; j < r; j++) {
    for (let i = 0; i < n; i++) v[i] = P[i * r + j]!;
    const proj = new Float32Array(j);
    for (let k = 0; k < j; k++) {
      let d = 0;
      for (let i = 0; i < n; i++) d = Math.fround(d + Math.fround(Q[i * r + k]! * P[i * r + j]!));
      proj[k] = d;
    }
    for (let k = 0; k < j; k++)
      for (let i = 0; i < n; i++) v[i] = Math.fround(v[i]! - Math.fround(proj[k]! * Q[i * r + k]!));
    let nn = 0;
    for (let i = 0; i < n; i++) nn = Math.fround(nn + Math.fround(v[i]! * v[i]!));
    const norm = Math.fround(Math.sqrt(nn));
    for (let i = 0; i < n; i++) Q[i * r + j] = v[i]! / norm;
  }
  return Q;
}

/** P = U·diag(σ)·Vᵀ-like: r columns that are nearly parallel (condition number ~1e6). */
function illConditioned(n: number, r: number): Float32Array {
  const P = new Float32Array(n * r);
  let seed = 12345;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  const base = Array.from({ length: n }, rnd);
  for (let j = 0; j < r; j++) {
    const scale = 10 ** (-6 * (j / (r - 1)));
    for (let i = 0; i < n; i++) P[i * r + j] = base[i]! + scale * rnd();
  }
  return P;
}

test('householder: ‖QᵀQ − I‖ < 1e-5 on an ill-conditioned P where classical Gram-Schmidt fails', () => {
  const [n, r] = [256, 8];
  const P = illConditioned(n, r);
  const hh = orthogonalityError(orthonormalize(P, n, r), n, r);
  const cgs = orthogonalityError(classicalGramSchmidt(P, n, r), n, r);
  console.log(
    `‖QᵀQ − I‖max: householder ${hh.toExponential(2)}, classical Gram-Schmidt ${cgs.toExponential(2)}`,
  );
  assert.ok(hh < 1e-5, `householder ${hh}`);
  assert.ok(cgs > 1e-2, `classical Gram-Schmidt ${cgs} (expected to lose orthogonality)`);
});

test('householder: Q spans the columns of P (P = Q·QᵀP)', () => {
  const [n, r] = [50, 5];
  const P = Float32Array.from({ length: n * r }, (_, i) => Math.sin(i * 1.7) + (i % r === 0 ? 2 : 0));
  const Q = orthonormalize(P, n, r);
  for (let j = 0; j < r; j++) {
    const c = new Float64Array(r);
    for (let k = 0; k < r; k++) for (let i = 0; i < n; i++) c[k]! += Q[i * r + k]! * P[i * r + j]!;
    for (let i = 0; i < n; i++) {
      let rec = 0;
      for (let k = 0; k < r; k++) rec += Q[i * r + k]! * c[k]!;
      assert.ok(Math.abs(rec - P[i * r + j]!) < 1e-5, `(${i}, ${j}): ${rec} vs ${P[i * r + j]}`);
    }
  }
});

test('householder: zero and rank-deficient inputs still give an orthonormal Q, deterministically', () => {
  for (const P of [
    new Float32Array(30),
    Float32Array.from({ length: 30 }, (_, i) => (i % 3 === 1 ? 0 : i)),
  ]) {
    const Q = orthonormalize(P, 10, 3);
    assert.ok(orthogonalityError(Q, 10, 3) < 1e-6);
    assert.deepEqual(orthonormalize(P, 10, 3), Q);
  }
  assert.throws(() => orthonormalize(new Float32Array(6), 2, 3), RangeError);
});
