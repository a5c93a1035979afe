import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initTfBackend } from './tf-backend.ts';
import { gumbelNoise } from './gumbel.ts';
import { gumbels, RngStream, statelessSeed, statelessWords } from '../random/index.ts';
import { nativeOps } from './ops/native.ts';

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

test("gumbel: TensorFlow's stateless kernel draws exactly random/'s statelessWords (native backend)", async (t) => {
  if (!backends.includes('tensorflow')) return t.skip('tfjs-node is not installed here');
  await initTfBackend('tensorflow');
  const native = nativeOps()!;
  const keys = [
    { seed: 0, stream: RngStream.gumbel, step: 0, rank: 0 },
    { seed: 0xffffffff, stream: RngStream.gumbel, step: 2 ** 31 + 5, rank: 70_000 },
    { seed: 17, stream: RngStream.gumbel, step: 3, rank: 1 },
  ];
  const before = tf.memory().numTensors;
  const words = native.statelessWords(keys.map(statelessSeed), 7); // 7: not a whole Philox block
  assert.deepEqual(words.shape, [3, 7]);
  const got = new Uint32Array((words.dataSync() as Int32Array).buffer.slice(0));
  words.dispose();
  assert.equal(tf.memory().numTensors, before, 'leaked tensors');
  keys.forEach((key, j) => assert.deepEqual(got.subarray(7 * j, 7 * j + 7), statelessWords(key, 7)));
});
