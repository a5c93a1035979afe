import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initTfBackend } from './tf-backend.ts';
import { gumbelNoise } from './gumbel.ts';
import { gumbels, RngStream } from '../random/index.ts';

const backends: string[] = [];
for (const b of ['cpu', 'wasm', 'tensorflow']) {
  try {
    await initTfBackend(b);
    backends.push(b);
  } catch {
    // tfjs-node is optional: checked where installed
  }
}

test(`gumbel: the backend's noise is rng.gumbels' (float64) to float32 rounding, on ${backends.join(', ')}`, async () => {
  const n = 1 << 16;
  const key = { seed: 3, stream: RngStream.gumbel, step: 41, rank: 1 };
  const ref = gumbels(key, n);
  for (const b of backends) {
    await initTfBackend(b);
    const before = tf.memory().numTensors;
    const t = gumbelNoise(key.seed, key.step, key.rank, [16, n / 16]);
    assert.deepEqual(t.shape, [16, n / 16]);
    const got = t.dataSync();
    t.dispose();
    assert.equal(tf.memory().numTensors, before, `${b} leaked tensors`);
    let worst = 0;
    for (let i = 0; i < n; i++)
      worst = Math.max(worst, Math.abs(got[i]! - ref[i]!) / Math.max(1, Math.abs(ref[i]!)));
    assert.ok(worst < 1e-6, `${b}: worst relative difference ${worst}`);
    // The tails are reached as in float64: the largest of 65,536 draws is above 8 (P ≈ 1 − e^{-22}).
    assert.ok(Math.max(...got) > 8, `${b}: largest draw ${Math.max(...got)}`);
  }
});
