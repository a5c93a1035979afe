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
  // Sample j of the global batch draws from the key of (seed, step, first + j), whatever rank holds it.
  const [seed, step, first, samples] = [3, 41, 5, 16];
  const ref = new Float64Array(n);
  for (let j = 0; j < samples; j++)
    ref.set(
      gumbels({ seed, stream: RngStream.gumbel, step, rank: first + j }, n / samples),
      (j * n) / samples,
    );
  for (const b of backends) {
    await initTfBackend(b);
    const before = tf.memory().numTensors;
    const t = gumbelNoise(seed, step, first, [samples, n / samples]);
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
