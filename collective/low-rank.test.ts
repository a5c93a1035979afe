import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mulGtY, mulGX, mulLRt, subLRt } from './low-rank.ts';

const rand = (n: number, seed: number) =>
  Float32Array.from({ length: n }, (_, i) => Math.fround(Math.sin((i + 1) * 12.9898 + seed * 78.233)));

/** out[i, j] = Σ_k at(i, k) · B(k, j), in float64 */
function naive(
  rowsA: number,
  inner: number,
  B: (k: number, j: number) => number,
  cols: number,
  at: (i: number, k: number) => number,
) {
  const out = new Float64Array(rowsA * cols);
  for (let i = 0; i < rowsA; i++)
    for (let j = 0; j < cols; j++) for (let k = 0; k < inner; k++) out[i * cols + j]! += at(i, k) * B(k, j);
  return out;
}

test('low-rank: the kernels agree with the textbook products (r below, at and above the 4-column block)', () => {
  for (const [a, b, r] of [
    [7, 5, 3],
    [6, 9, 4],
    [5, 11, 9],
    [3, 2, 1],
  ] as const)
    check(a, b, r);
});

function check(a: number, b: number, r: number): void {
  const G = rand(a * b, 1);
  const X = rand(b * r, 2);
  const Y = rand(a * r, 3);
  const R = rand(b * r, 4);
  const close = (x: ArrayLike<number>, y: ArrayLike<number>) => {
    assert.equal(x.length, y.length);
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(x[i]! - y[i]!) < 1e-5, `${i}: ${x[i]} vs ${y[i]}`);
  };
  close(
    mulGX(G, a, b, X, r),
    naive(
      a,
      b,
      (k, j) => X[k * r + j]!,
      r,
      (i, k) => G[i * b + k]!,
    ),
  );
  close(
    mulGtY(G, a, b, Y, r),
    naive(
      b,
      a,
      (k, j) => Y[k * r + j]!,
      r,
      (i, k) => G[k * b + i]!,
    ),
  );
  const LRt = naive(
    a,
    r,
    (k, j) => R[j * r + k]!,
    b,
    (i, k) => Y[i * r + k]!,
  );
  close(mulLRt(Y, R, a, b, r), LRt);
  const G2 = Float32Array.from(G);
  subLRt(G2, Y, R, a, b, r);
  close(
    G2,
    Array.from(G, (g, i) => g - LRt[i]!),
  );
}
