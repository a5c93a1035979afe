import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadSpec } from '../config/index.ts';
import { initTfBackend } from './tf-backend.ts';
import {
  createTransformerTrainer,
  TransformerBatchError,
  TransformerTrainerArgumentError,
  type TransformerBatch,
} from './transformer-trainer.ts';
import { StateChecksumError } from './state-io.ts';

await initTfBackend('wasm');

const tiny = loadSpec('tiny');
const T = tiny.transformer;
const L = T.textLen;
const N = tiny.dvae.grid ** 2;

function batch(n: number, salt = 0): TransformerBatch {
  return {
    n,
    text: Int32Array.from({ length: n * L }, (_, k) =>
      k % L < 4 + ((k / L) | 0) ? 1 + ((5 * k + salt) % (T.vocabSize - 1)) : 0,
    ),
    image: Int32Array.from(
      { length: n * N },
      (_, k) => (11 * k + salt + ((k / N) | 0)) % tiny.dvae.codebookSize,
    ),
  };
}

const bitsEqual = (a: Float32Array[], b: Float32Array[]) =>
  a.length === b.length &&
  a.every((x, i) => x.length === b[i]!.length && x.every((v, j) => Object.is(v, b[i]![j])));

test('transformer-trainer: steps leak no tensors and are bit-identical for the same seed, state and batch', () => {
  const a = createTransformerTrainer(T, tiny.dvae, 3, 2);
  const b = createTransformerTrainer(T, tiny.dvae, 3, 2);
  const before = tf.memory().numTensors;
  for (let step = 0; step < 3; step++) {
    const ga = a.computeGradients(batch(4, step), step, 0);
    const gb = b.computeGradients(batch(4, step), step, 1);
    assert.equal(ga.loss, gb.loss);
    assert.ok(bitsEqual(ga.grads, gb.grads), `step ${step}: grads differ`);
    assert.ok(
      Math.abs(
        ga.loss - (T.textLossWeight * ga.metrics.textLoss! + T.imageLossWeight * ga.metrics.imageLoss!),
      ) < 1e-5,
    );
    const ma = a.applyGradients(ga.grads, step, ga.loss);
    b.applyGradients(gb.grads, step, gb.loss);
    assert.equal(ma.lr, T.lr * Math.min(1, (step + 1) / T.warmupSteps));
    assert.equal(tf.memory().numTensors, before, `step ${step} leaked tensors`);
  }
  assert.ok(bitsEqual(a.exportParams('params'), b.exportParams('params')));
  const c = createTransformerTrainer(T, tiny.dvae, 4, 2);
  assert.ok(
    !bitsEqual(a.exportParams('params'), c.exportParams('params')),
    'another seed must give another init',
  );
  for (const t of [a, b, c]) t.dispose();
});

test('transformer-trainer: saveState/loadState resumes bit-identically, EMA and plateau clock included', () => {
  const a = createTransformerTrainer(T, tiny.dvae, 0, 1);
  for (let step = 0; step < 4; step++) {
    const g = a.computeGradients(batch(3, step), step, 0);
    a.applyGradients(g.grads, step, g.loss);
  }
  const bytes = a.saveState();
  const b = createTransformerTrainer(T, tiny.dvae, 99, 1);
  b.loadState(bytes);
  assert.ok(bitsEqual(a.exportParams('ema'), b.exportParams('ema')));
  for (let step = 4; step < 7; step++) {
    const ga = a.computeGradients(batch(3, step), step, 0);
    const gb = b.computeGradients(batch(3, step), step, 0);
    assert.ok(bitsEqual(ga.grads, gb.grads));
    assert.deepEqual(a.applyGradients(ga.grads, step, ga.loss), b.applyGradients(gb.grads, step, gb.loss));
  }
  assert.ok(bitsEqual(a.exportParams('params'), b.exportParams('params')));
  assert.ok(bitsEqual(a.exportParams('ema'), b.exportParams('ema')));
  assert.ok(!bitsEqual(a.exportParams('ema'), a.exportParams('params')), 'EMA lags the parameters');
  // The same bytes as a Node Buffer (what fs.readFile gives) load to the same parameters.
  const c = createTransformerTrainer(T, tiny.dvae, 98, 1);
  c.loadState(Buffer.from(bytes));
  c.loadState(Buffer.from(a.saveState()));
  assert.ok(bitsEqual(c.exportParams('params'), a.exportParams('params')));
  c.dispose();
  const corrupt = bytes.slice();
  corrupt[corrupt.length - 5]! ^= 0xff;
  assert.throws(() => b.loadState(corrupt), StateChecksumError);
  a.dispose();
  b.dispose();
});

test('transformer-trainer: weight decay touches matrices only, never gains, biases or embeddings', () => {
  const cfg = { ...T, warmupSteps: 0, weightDecay: 0.5, lr: 0.1 };
  const t = createTransformerTrainer(cfg, tiny.dvae, 0, 1);
  const specs = t.paramSpecs();
  const before = t.exportParams('params');
  // Zero gradients: Adam's step is 0, so only the decoupled decay p ← p·(1 − lr·wd) can move anything.
  t.applyGradients(
    specs.map((s) => new Float32Array(s.shape.reduce((a, b) => a * b, 1))),
    0,
    1,
  );
  const after = t.exportParams('params');
  specs.forEach((s, i) => {
    const decays = s.kind === 'matrix';
    after[i]!.forEach((v, j) => {
      const want = decays ? Math.fround(before[i]![j]! * Math.fround(1 - 0.1 * 0.5)) : before[i]![j]!;
      assert.ok(Math.abs(v - want) <= 1e-7 * Math.abs(want), `${s.name}[${j}] (${s.kind}): ${v} vs ${want}`);
    });
  });
  t.dispose();
});

test('transformer-trainer: gradients are clipped to norm 4 inside applyGradients, on what it is given', () => {
  const specs = createTransformerTrainer(T, tiny.dvae, 0, 1);
  const g0 = specs.computeGradients(batch(2), 0, 0).grads;
  specs.dispose();
  const scaled = (k: number) => g0.map((g) => g.map((x) => x * k));
  const norm = (gs: Float32Array[]) =>
    Math.sqrt(gs.reduce((s, g) => s + g.reduce((a, x) => a + x * x, 0), 0));
  const big = scaled(1000 / norm(g0)); // norm 1000
  const clippedByHand = scaled(4 / norm(g0)); // what clipping should turn it into
  // A norm-1 second update: Adam's step depends on the ratio of the two gradients, so it shows whether
  // the first one was clipped.
  const small = scaled(1 / norm(g0));
  const run = (gradClip: number, first: Float32Array[]) => {
    const t = createTransformerTrainer({ ...T, gradClip }, tiny.dvae, 0, 1);
    const m = t.applyGradients(first, 0, 3);
    t.applyGradients(small, 1, 3);
    const p = t.exportParams('params');
    t.dispose();
    return { m, p };
  };
  const clipped = run(4, big);
  assert.equal(clipped.m.clipped, 1);
  assert.ok(Math.abs(clipped.m.gradNorm! - 1000) < 1e-2, `reported norm ${clipped.m.gradNorm}`);
  const byHand = run(1e9, clippedByHand);
  const unclipped = run(1e9, big);
  assert.equal(unclipped.m.clipped, 0);
  const maxDiff = (a: Float32Array[], b: Float32Array[]) =>
    Math.max(...a.map((x, i) => Math.max(...x.map((v, j) => Math.abs(v - b[i]![j]!)))));
  assert.ok(
    maxDiff(clipped.p, byHand.p) < 1e-6,
    `clip in apply = clip by hand (${maxDiff(clipped.p, byHand.p)})`,
  );
  assert.ok(maxDiff(clipped.p, unclipped.p) > 1e-5, 'clipping must change the result of the second update');
});

test('transformer-trainer: bad batches and arguments are named', () => {
  const t = createTransformerTrainer(T, tiny.dvae, 0, 2);
  const b = batch(2);
  assert.throws(
    () => t.computeGradients({ ...b, n: 3 }, 0, 0),
    (e) => e instanceof TransformerBatchError && e.field === 'text',
  );
  assert.throws(
    () => t.computeGradients({ ...b, image: b.image.subarray(1) }, 0, 0),
    (e) => e instanceof TransformerBatchError && e.field === 'image',
  );
  const badImage = b.image.slice();
  badImage[5] = tiny.dvae.codebookSize;
  assert.throws(() => t.computeGradients({ ...b, image: badImage }, 0, 0), /id 32 at 5 is outside \[0, 32\)/);
  assert.throws(
    () => t.computeGradients(b, 0, 2),
    (e) => e instanceof TransformerTrainerArgumentError && e.field === 'rank',
  );
  assert.throws(
    () => t.computeGradients(b, -1, 0),
    (e) => e instanceof TransformerTrainerArgumentError && e.field === 'step',
  );
  assert.throws(
    () => createTransformerTrainer(T, tiny.dvae, -1, 1),
    (e) => e instanceof TransformerTrainerArgumentError && e.field === 'seed',
  );
  t.dispose();
});
