import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveSpec } from '../config/index.ts';
import type { GradientResult, Trainer } from '../model/index.ts';
import type { StageBatchSource } from './batches.ts';
import { microBatches, rankGradients } from './rank-gradients.ts';

test('rank-gradients: micro-batches cover a slice in order, at most microBatch each', () => {
  assert.deepEqual(microBatches(5, 0), [{ from: 0, to: 5 }]);
  assert.deepEqual(microBatches(5, 2), [
    { from: 0, to: 2 },
    { from: 2, to: 4 },
    { from: 4, to: 5 },
  ]);
  assert.deepEqual(microBatches(2, 8), [{ from: 0, to: 2 }]);
});

/** A "model" whose per-sample gradient is the sample's value: the global-batch mean is known exactly. */
interface Vals {
  v: number[];
  n: number;
}
const source = (B: number): StageBatchSource => ({
  async batch(step, rank, W) {
    const start = Math.floor((rank * B) / W);
    const end = Math.floor(((rank + 1) * B) / W);
    return {
      v: Array.from({ length: end - start }, (_, j) => step * 100 + start + j),
      n: end - start,
    } as never;
  },
  slice: (b, from, to) => {
    const x = b as unknown as Vals;
    return { v: x.v.slice(from, to), n: to - from } as never;
  },
});
const passes: number[] = [];
const meanTrainer = {
  computeGradients(b: Vals): GradientResult {
    passes.push(b.n);
    const m = b.v.reduce((s, x) => s + x, 0) / b.n;
    return { loss: m, grads: [Float32Array.of(m)], metrics: { lr: 0.5 } };
  },
} as unknown as Trainer<never>;

test('rank-gradients: for any W and micro-batch, the mean over ranks is the global-batch mean', async () => {
  for (const [W, micro] of [
    [1, 0],
    [2, 0],
    [3, 0],
    [3, 2],
    [8, 1],
  ] as const) {
    const spec = resolveSpec({ preset: 'tiny', train: { worldSize: W, microBatch: micro } }); // B = 8
    passes.length = 0;
    const all = await Promise.all(
      Array.from({ length: W }, (_, r) => rankGradients(meanTrainer, source(8), spec, 3, r, W)),
    );
    const mean = all.reduce((s, g) => s + g.grads[0]![0]!, 0) / W;
    assert.ok(Math.abs(mean - (300 + 3.5)) < 1e-4, `W ${W}, micro ${micro}: ${mean}`);
    assert.ok(Math.abs(all.reduce((s, g) => s + g.loss, 0) / W - 303.5) < 1e-4);
    assert.ok(
      passes.every((n) => micro === 0 || n <= micro),
      `passes ${passes.join(',')}`,
    );
    assert.equal(all[0]!.metrics.lr, 0.5);
  }
});
