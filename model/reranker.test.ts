import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadSpec, resolveSpec } from '../config/index.ts';
import { initTfBackend } from './tf-backend.ts';
import {
  initRerankerParams,
  Reranker,
  RerankerConfigError,
  rerankerDims,
  RerankerInputError,
  rerankerParamSpecs,
} from './reranker.ts';
import { createRerankTrainer, rerankLrAt, type RerankBatch } from './reranker-trainer.ts';
import { decodeState, encodeState, StateMismatchError } from './state-io.ts';

await initTfBackend('wasm');

const tiny = loadSpec('tiny');
const C = tiny.rerank;
const L = tiny.transformer.textLen;
const R = tiny.dvae.resolution;
const dims = rerankerDims(C, tiny.transformer, tiny.dvae);

const COLORS = [
  [220, 40, 40],
  [40, 170, 70],
  [40, 90, 220],
  [235, 200, 30],
  [140, 60, 180],
  [245, 130, 30],
] as const;

/** A white R×R image with one coloured figure: a block, a horizontal bar or a vertical bar. */
function figure(color: number, kind: number): Uint8Array {
  const img = new Uint8Array(R * R * 3).fill(255);
  const [x0, x1, y0, y1] = [
    [R / 4, (3 * R) / 4, R / 4, (3 * R) / 4],
    [1, R - 1, (3 * R) / 8, (5 * R) / 8],
    [(3 * R) / 8, (5 * R) / 8, 1, R - 1],
  ][kind]!;
  for (let y = y0!; y < y1!; y++) for (let x = x0!; x < x1!; x++) img.set(COLORS[color]!, (y * R + x) * 3);
  return img;
}

/** n pairs (distinct while n ≤ 18): figure k's image with a two-token caption naming its colour and kind. */
function batch(n: number, salt = 0): RerankBatch {
  const images = new Uint8Array(n * R * R * 3);
  const text = new Int32Array(n * L);
  for (let k = 0; k < n; k++) {
    const c = (k + salt) % COLORS.length;
    const s = (Math.floor(k / COLORS.length) + salt) % 3;
    images.set(figure(c, s), k * R * R * 3);
    text[k * L] = 1 + c;
    text[k * L + 1] = 10 + s;
  }
  return { images, text, n };
}

const bitsEqual = (a: Float32Array[], b: Float32Array[]) =>
  a.length === b.length &&
  a.every((x, i) => x.length === b[i]!.length && x.every((v, j) => Object.is(v, b[i]![j])));

test('reranker: the layout follows the config, and a config it cannot build is named', () => {
  const specs = rerankerParamSpecs(dims);
  assert.equal(new Set(specs.map((s) => s.name)).size, specs.length, 'unique names');
  assert.deepEqual(
    specs[0]!.shape,
    [3, 3, 6, C.imageWidth],
    'raw RGB + contrast channels into the first conv',
  );
  assert.equal(dims.featureSide, R / 2 ** C.imageStages);
  assert.equal(specs.filter((s) => s.name.startsWith('text.layer0.')).length, 12);
  const init = initRerankerParams(C, dims, 0);
  assert.deepEqual(
    init.map((a) => a.length),
    specs.map((s) => s.shape.reduce((x, y) => x * y, 1)),
  );
  assert.equal(init.at(-1)![0], Math.fround(Math.log(C.logitScaleInit)));
  assert.throws(
    () => rerankerDims({ ...C, imageStages: 5 }, tiny.transformer, tiny.dvae),
    (e: unknown) => e instanceof RerankerConfigError && e.field === 'imageStages' && e.fatal,
  );
  assert.throws(
    () => resolveSpec({ preset: 'tiny', rerank: { imageStages: 5, textWidth: 15 } }),
    /rerank\.imageStages: dvae\.resolution 16 must be divisible by 2\^imageStages = 32[\s\S]*rerank\.textWidth: must be divisible by textHeads/,
  );
  // Any W up to the batch: ranks gather slices of unequal length (activities/rank-gradients.ts).
  assert.equal(resolveSpec({ preset: 'tiny', rerank: { batchSize: 5 } }).rerank.batchSize, 5);
  assert.throws(
    () => resolveSpec({ preset: 'tiny', rerank: { batchSize: 3 }, train: { worldSize: 4 } }),
    /rerank\.batchSize: must be ≥ train\.worldSize and train\.elastic\.min \(4\)/,
  );
});

test('reranker: steps leak no tensors, are bit-identical for the same seed, and resume exactly from saved state', () => {
  const a = createRerankTrainer(C, tiny.transformer, tiny.dvae, 3, 1);
  const b = createRerankTrainer(C, tiny.transformer, tiny.dvae, 3, 1);
  const before = tf.memory().numTensors;
  for (let step = 0; step < 3; step++) {
    const ga = a.computeGradients(batch(6, step), step, 0);
    const gb = b.computeGradients(batch(6, step), step, 0);
    assert.equal(ga.loss, gb.loss);
    assert.ok(bitsEqual(ga.grads, gb.grads));
    const m = a.applyGradients(ga.grads, step, ga.loss);
    b.applyGradients(gb.grads, step, gb.loss);
    assert.equal(m.lr, rerankLrAt(C, step));
    assert.equal(tf.memory().numTensors, before, `step ${step} leaked tensors`);
  }
  const saved = a.saveState();
  const c = createRerankTrainer(C, tiny.transformer, tiny.dvae, 9, 1);
  c.loadState(Buffer.from(saved)); // a Node Buffer, as the checkpoint store hands it over
  for (const t of [a, c]) {
    const g = t.computeGradients(batch(6, 7), 3, 0);
    t.applyGradients(g.grads, 3, g.loss);
  }
  assert.ok(bitsEqual(a.exportParams('params'), c.exportParams('params')), 'resumed = uninterrupted');
  assert.ok(bitsEqual(a.exportParams('ema'), c.exportParams('ema')));
  const other = createRerankTrainer(tiny.rerank, { ...tiny.transformer, vocabSize: 40 }, tiny.dvae, 0, 1);
  assert.throws(() => other.loadState(saved), /text\.embed/);
  for (const t of [a, b, c, other]) t.dispose();
});

test('reranker: two ranks exchanging embeddings get the gradient of the one-rank global batch', () => {
  const one = createRerankTrainer(C, tiny.transformer, tiny.dvae, 5, 1);
  const ranks = [0, 1].map(() => createRerankTrainer(C, tiny.transformer, tiny.dvae, 5, 2));
  const all = batch(8, 1);
  const half = (r: number): RerankBatch => ({
    n: 4,
    images: all.images.slice(r * 4 * R * R * 3, (r + 1) * 4 * R * R * 3),
    text: all.text.slice(r * 4 * L, (r + 1) * 4 * L),
  });
  const gathered = ranks.map((t, r) => t.exchange!(half(r), 0, r));
  const parts = ranks.map((t, r) => t.computeGradients(half(r), 0, r, gathered));
  const whole = one.computeGradients(all, 0, 0);
  assert.ok(
    Math.abs(parts[0]!.loss - whole.loss) < 1e-5 && parts[0]!.loss === parts[1]!.loss,
    'the same global loss',
  );
  let worst = 0;
  whole.grads.forEach((g, i) => {
    const scale = Math.max(1e-3, ...g.map(Math.abs));
    g.forEach((v, j) => {
      const mean = (parts[0]!.grads[i]![j]! + parts[1]!.grads[i]![j]!) / 2;
      worst = Math.max(worst, Math.abs(mean - v) / scale);
    });
  });
  assert.ok(
    worst < 1e-3,
    `mean of the ranks' gradients vs the global batch's: worst relative error ${worst}`,
  );
  for (const t of [one, ...ranks]) t.dispose();
});

test('reranker: learns to match captions to images, and scores pairs with cosines', () => {
  const t = createRerankTrainer(
    { ...C, steps: 60, lr: 3e-3, warmupSteps: 1 },
    tiny.transformer,
    tiny.dvae,
    0,
    1,
  );
  const b = batch(12);
  let first = NaN;
  let last = { loss: NaN, accuracy: 0 };
  for (let step = 0; step < 60; step++) {
    const g = t.computeGradients(b, step, 0);
    if (step === 0) first = g.loss;
    last = { loss: g.loss, accuracy: g.metrics.accuracy! };
    t.applyGradients(g.grads, step, g.loss);
  }
  assert.ok(last.loss < first / 2, `loss ${first} → ${last.loss}`);
  assert.ok(last.accuracy > 0.8, `in-batch retrieval ${last.accuracy}`);
  const model = Reranker.fromArrays(C, dims, t.exportParams('params'));
  const scores = model.score(b.text, b.images, b.n);
  // Mismatched: every caption against the next pair's image.
  const shifted = new Uint8Array(b.images.length);
  shifted.set(b.images.subarray(R * R * 3));
  shifted.set(b.images.subarray(0, R * R * 3), b.images.length - R * R * 3);
  const wrong = model.score(b.text, shifted, b.n);
  assert.ok(scores.every((s) => s >= -1 && s <= 1));
  const mean = (a: Float32Array) => a.reduce((x, y) => x + y, 0) / a.length;
  assert.ok(mean(scores) > mean(wrong) + 0.2, `matching ${mean(scores)} vs mismatched ${mean(wrong)}`);
  const sim = model.similarities(b.text, b.n, b.images, b.n); // [image, caption]
  scores.forEach((v, i) =>
    assert.ok(Math.abs(sim[i * b.n + i]! - v) < 1e-5, 'the diagonal is the pair score'),
  );
  assert.ok(
    Math.abs(sim[1]! - model.score(b.text.subarray(L, 2 * L), b.images.subarray(0, R * R * 3), 1)[0]!) < 1e-5,
  );
  assert.throws(() => model.score(b.text, b.images.subarray(1), b.n), RerankerInputError);
  assert.throws(
    () =>
      model.score(
        b.text.map(() => 999),
        b.images,
        b.n,
      ),
    /id 999 at 0 is outside/,
  );
  assert.throws(() => t.loadState(otherStageState()), StateMismatchError);
  model.dispose();
  t.dispose();
});

/** A saved state of another stage (what a mixed-up checkpoint part would hold). */
function otherStageState(): Uint8Array {
  const t = createRerankTrainer(C, tiny.transformer, tiny.dvae, 0, 1);
  const { meta, arrays } = decodeState<Record<string, unknown>>(t.saveState());
  t.dispose();
  return encodeState({ ...meta, stage: 'transformer' }, [...arrays.entries()]);
}
