// The deterministic workload that the separate-process tests run in each child and recompute in the
// parent: all-reduce inputs of several sizes, and PowerSGD gradients of a small mixed model.
import type { ParamSpec } from '../model/index.ts';
import { values } from './collective-helpers.ts';

export const WORK_SIZES = [1, 1000, 1_000_003];

export function workInput(n: number, k: number, rank: number): Float32Array {
  return values(n, 1000 * k + rank, 10 ** (rank - 1));
}

export const psgdSpecs: ParamSpec[] = [
  { name: 'block0.conv.w', shape: [3, 3, 8, 16], kind: 'matrix' },
  { name: 'block0.conv.b', shape: [16], kind: 'bias' },
  { name: 'block1.fc.w', shape: [24, 40], kind: 'matrix' },
  { name: 'block1.ln.g', shape: [40], kind: 'gain' },
];

export function psgdGrads(step: number, rank: number): Float32Array[] {
  return psgdSpecs.map((s, i) =>
    values(
      s.shape.reduce((a, b) => a * b, 1),
      77 * step + 7 * rank + i,
      1e-2,
    ),
  );
}
