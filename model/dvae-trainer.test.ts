import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadSpec } from '../config/index.ts';
import { initTfBackend } from './tf-backend.ts';
import { Dvae, DvaeInputError } from './dvae.ts';
import { DvaeStateError, DvaeStepError, createDvaeTrainer, type DvaeBatch } from './dvae-trainer.ts';
import { StateChecksumError } from './state-io.ts';

await initTfBackend('wasm');
const cfg = loadSpec('tiny').dvae;
const R = cfg.resolution;

function batch(n: number, salt: number): DvaeBatch {
  const images = new Uint8Array(n * R * R * 3);
  for (let i = 0; i < images.length; i++) images[i] = (Math.imul(i + 1, 2654435761 + salt) >>> 24) & 0xff;
  return { images, n };
}

const bits = (arrays: Float32Array[]) =>
  arrays.map((a) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64'));

test('dvae-trainer: same state, batch, step and rank give bit-identical gradients; noise follows step and sample', () => {
  const a = createDvaeTrainer(cfg, 7, 2);
  const b = createDvaeTrainer(cfg, 7, 2);
  const x = batch(4, 1);
  const ga = a.computeGradients(x, 3, 1);
  assert.deepEqual(bits(b.computeGradients(x, 3, 1).grads), bits(ga.grads));
  assert.deepEqual(bits(a.computeGradients(x, 3, 1).grads), bits(ga.grads), 'recomputing changes nothing');
  assert.notDeepEqual(
    bits(a.computeGradients(x, 3, 0).grads),
    bits(ga.grads),
    'another rank (so other samples of the global batch) draws other Gumbel noise',
  );
  assert.deepEqual(
    bits(a.computeGradients({ ...x, first: 4 }, 3, 0).grads),
    bits(ga.grads),
    'the noise belongs to the samples (rank 1 of 4-sample slices starts at sample 4), not to the rank',
  );
  assert.notDeepEqual(
    bits(a.computeGradients(x, 4, 1).grads),
    bits(ga.grads),
    'another step draws other Gumbel noise',
  );
  assert.deepEqual(
    a.paramSpecs().map((s) => s.shape.reduce((p, q) => p * q, 1)),
    ga.grads.map((g) => g.length),
    'one gradient per parameter, in paramSpecs order',
  );
  for (const k of ['loss', 'recon', 'kl', 'mse', 'usage', 'tau', 'beta', 'lr'])
    assert.ok(Number.isFinite(ga.metrics[k]), k);
  assert.equal(ga.metrics.tau, 1 / 16 + ((15 / 16) * (1 + Math.cos((Math.PI * 3) / cfg.tauDecaySteps))) / 2);
  a.dispose();
  b.dispose();
});

test('dvae-trainer: no tensors leak across compute → apply steps', () => {
  const t = createDvaeTrainer(cfg, 1, 1);
  const step = (s: number) => {
    const r = t.computeGradients(batch(4, s), s, 0);
    t.applyGradients(r.grads, s, r.loss);
  };
  step(0);
  const before = tf.memory().numTensors;
  for (let s = 1; s < 4; s++) step(s);
  t.exportParams('ema');
  t.loadState(t.saveState());
  assert.equal(tf.memory().numTensors, before);
  t.dispose();
});

test('dvae-trainer: a step trains (loss falls on a repeated batch) and the EMA lags the parameters', () => {
  const t = createDvaeTrainer({ ...cfg, emaDecay: 0.5 }, 2, 1);
  const x = batch(8, 3);
  const first = t.computeGradients(x, 0, 0);
  let last = first;
  for (let s = 0; s < 8; s++) {
    last = t.computeGradients(x, 0, 0); // step 0: same noise, same schedules
    t.applyGradients(last.grads, s, last.loss);
  }
  assert.ok(t.computeGradients(x, 0, 0).loss < first.loss, `loss ${first.loss} did not fall`);
  const p = t.exportParams('params');
  const e = t.exportParams('ema');
  assert.notDeepEqual(bits(p), bits(e));
  t.dispose();
});

test('dvae-trainer: saveState/loadState resumes exactly (params, moments, EMA, update count)', () => {
  const straight = createDvaeTrainer(cfg, 5, 1);
  const first = createDvaeTrainer(cfg, 5, 1);
  const run = (t: ReturnType<typeof createDvaeTrainer>, from: number, to: number) => {
    for (let s = from; s < to; s++) {
      const r = t.computeGradients(batch(4, s), s, 0);
      t.applyGradients(r.grads, s, r.loss);
    }
  };
  run(straight, 0, 4);
  run(first, 0, 2);
  const blob = first.saveState();
  first.dispose();
  const resumed = createDvaeTrainer(cfg, 5, 1);
  resumed.loadState(blob);
  run(resumed, 2, 4);
  assert.deepEqual(bits(resumed.exportParams('params')), bits(straight.exportParams('params')));
  assert.deepEqual(bits(resumed.exportParams('ema')), bits(straight.exportParams('ema')));
  assert.deepEqual(resumed.saveState(), straight.saveState());
  resumed.dispose();
  straight.dispose();
});

/** Trains steps [from, to) on `batch(4, step)`; returns each step's codeRestarts metric. */
function run(t: ReturnType<typeof createDvaeTrainer>, from: number, to: number): number[] {
  const rewrites: number[] = [];
  for (let s = from; s < to; s++) {
    const r = t.computeGradients(batch(4, s), s, 0);
    rewrites.push(t.applyGradients(r.grads, s, r.loss).codeRestarts ?? 0);
  }
  return rewrites;
}

test('dvae-trainer: dead-code restarts happen on schedule, copy codes, and resume exactly', () => {
  const rc = { ...cfg, straightThrough: true, codeRestartEvery: 2, codeRestartUntil: 6 };
  const straight = createDvaeTrainer(rc, 5, 1);
  const first = createDvaeTrainer(rc, 5, 1);
  const restarts = run(straight, 0, 8);
  // A 4×4 grid of 4 images uses far fewer than 32 codes: the restart steps before codeRestartUntil (1, 3,
  // 5) restart some (which of them depends on the Gumbel draws); after codeRestartUntil, none.
  assert.ok(restarts[1]! + restarts[3]! + restarts[5]! > 0, `restarts per step ${restarts}`);
  assert.deepEqual([restarts[0], restarts[2], restarts[4], restarts[6], restarts[7]], [0, 0, 0, 0, 0]);
  run(first, 0, 3);
  const blob = first.saveState();
  first.dispose();
  const resumed = createDvaeTrainer(rc, 5, 1);
  resumed.loadState(blob);
  run(resumed, 3, 8);
  assert.deepEqual(bits(resumed.exportParams('params')), bits(straight.exportParams('params')));
  assert.deepEqual(resumed.saveState(), straight.saveState());
  assert.throws(() => createDvaeTrainer({ ...rc, straightThrough: false }, 5, 1), /straightThrough/);
  resumed.dispose();
  straight.dispose();
});

test('dvae-trainer: exportParams("ema") builds a Dvae that encodes like the trained EMA', () => {
  const t = createDvaeTrainer(cfg, 4, 1);
  const r = t.computeGradients(batch(4, 9), 0, 0);
  t.applyGradients(r.grads, 0, r.loss);
  const ema = Dvae.fromParams(cfg, t.exportParams('ema'));
  const again = Dvae.fromParams(cfg, t.exportParams('ema'));
  const x = batch(3, 2).images;
  const tokens = ema.encode(x);
  assert.deepEqual(again.encode(x), tokens);
  assert.equal(ema.decode(tokens).length, 3 * R * R * 3);
  ema.dispose();
  again.dispose();
  t.dispose();
});

test('dvae-trainer: bad batches, steps, ranks and foreign or corrupt state are named', () => {
  const t = createDvaeTrainer(cfg, 0, 2);
  assert.throws(
    () => t.computeGradients({ images: new Uint8Array(10), n: 1 }, 0, 0),
    (e: unknown) =>
      e instanceof DvaeInputError && /expected uint8 \[1, 16, 16, 3\] = 768 bytes, got 10/.test(e.message),
  );
  assert.throws(
    () => t.computeGradients(batch(1, 0), 0, 2),
    (e: unknown) => e instanceof DvaeStepError && e.field === 'rank',
  );
  assert.throws(
    () => t.computeGradients(batch(1, 0), -1, 0),
    (e: unknown) => e instanceof DvaeStepError && e.field === 'step',
  );
  assert.throws(
    () => t.computeGradients({ images: new Uint8Array(0), n: 0 }, 0, 0),
    (e: unknown) => e instanceof DvaeStepError && e.field === 'batch.n',
  );
  assert.throws(
    () => createDvaeTrainer(cfg, 0, 0),
    (e: unknown) => e instanceof DvaeStepError && e.field === 'worldSize',
  );
  const other = createDvaeTrainer({ ...cfg, codebookSize: 16 }, 0, 1);
  assert.throws(
    () => t.loadState(other.saveState()),
    (e: unknown) =>
      e instanceof DvaeStateError && /config.codebookSize is 16 in the state, 32 here/.test(e.message),
  );
  const blob = t.saveState();
  blob[blob.length - 1]! ^= 1;
  assert.throws(() => t.loadState(blob), StateChecksumError);
  other.dispose();
  t.dispose();
});

test('dvae-trainer: a batch split into parts at their sample offsets gives the whole batch gradient', () => {
  const t = createDvaeTrainer(cfg, 5, 3);
  const whole = batch(4, 9);
  const part = (from: number, to: number): DvaeBatch => ({
    images: whole.images.subarray(from * R * R * 3, to * R * R * 3),
    n: to - from,
    first: from,
  });
  const all = t.computeGradients(whole, 2, 0);
  // 3 ranks of a 4-sample batch: slices of 1, 1 and 2 samples, each weighted by its share.
  const parts = [part(0, 1), part(1, 2), part(2, 4)].map((b, r) => ({
    w: b.n / 4,
    g: t.computeGradients(b, 2, r),
  }));
  const loss = parts.reduce((s, p) => s + p.w * p.g.loss, 0);
  assert.ok(Math.abs(loss - all.loss) <= 1e-5 * Math.abs(all.loss), `${loss} vs ${all.loss}`);
  all.grads.forEach((g, i) => {
    for (let j = 0; j < g.length; j++) {
      const sum = parts.reduce((s, p) => s + p.w * p.g.grads[i]![j]!, 0);
      assert.ok(
        Math.abs(sum - g[j]!) <= 1e-4 * Math.abs(g[j]!) + 1e-7,
        `param ${i}[${j}]: ${sum} vs ${g[j]}`,
      );
    }
  });
  assert.throws(() => t.computeGradients({ ...whole, first: -1 }, 2, 0), DvaeStepError);
  t.dispose();
});

test('dvae-trainer: code splits happen on schedule from the probe, and resume exactly', () => {
  const sc = { ...cfg, codeSplitEvery: 2, codeSplitUntil: 6 };
  const probe = batch(6, 99).images;
  const straight = createDvaeTrainer(sc, 5, 1, { probe });
  const first = createDvaeTrainer(sc, 5, 1, { probe });
  const splits = run(straight, 0, 8);
  // Six noise images over a 4×4 grid use a few of 32 codes, each for cells of many kinds: every split step
  // before codeSplitUntil (1, 3, 5) splits; the others and the steps after it never do.
  assert.ok(splits[1]! > 0 && splits[3]! > 0 && splits[5]! > 0, `splits per step ${splits}`);
  assert.deepEqual([splits[0], splits[2], splits[4], splits[6], splits[7]], [0, 0, 0, 0, 0]);
  run(first, 0, 3);
  const blob = first.saveState();
  first.dispose();
  const resumed = createDvaeTrainer(sc, 5, 1, { probe });
  resumed.loadState(blob);
  run(resumed, 3, 8);
  assert.deepEqual(bits(resumed.exportParams('params')), bits(straight.exportParams('params')));
  assert.deepEqual(resumed.saveState(), straight.saveState());
  // Without splitting the same run ends elsewhere.
  const plain = createDvaeTrainer(cfg, 5, 1);
  run(plain, 0, 8);
  assert.notDeepEqual(bits(plain.exportParams('params')), bits(straight.exportParams('params')));
  assert.throws(() => createDvaeTrainer(sc, 5, 1), /codeSplitEvery needs a probe/);
  // A stage of 6 updates leaves its last 2 (codeSplitEvery) without a split, whatever codeSplitUntil says.
  const short = createDvaeTrainer({ ...sc, steps: 6, codeSplitUntil: 100 }, 5, 1, { probe });
  const shortSplits = run(short, 0, 6);
  assert.ok(shortSplits[1]! > 0 && shortSplits[3]! > 0, `splits per step ${shortSplits}`);
  assert.equal(shortSplits[5], 0, 'no split in the last codeSplitEvery updates');
  for (const t of [resumed, straight, plain, short]) t.dispose();
});
