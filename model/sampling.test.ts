import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { PNG } from 'pngjs';
import { loadSpec } from '../config/index.ts';
import { initTfBackend } from './tf-backend.ts';
import {
  createSampler,
  pickToken,
  rgbToPngs,
  sampleImageTokens,
  tokensToPngs,
  SamplerSessionError,
  SamplingOptionError,
  type SampleRow,
} from './sampling.ts';
import { sampleWithoutCache } from './sampling-reference.ts';
import { initTransformerParams, Transformer } from './transformer.ts';
import { Dvae, initDvaeParams } from './dvae.ts';

await initTfBackend('wasm');

const tiny = loadSpec('tiny');
const L = tiny.transformer.textLen;
const N = tiny.dvae.grid ** 2;

// Random init scaled ×4 so the logits are far from uniform but not one-hot (entropy ≈ 2 nats of ln 32):
// the samples depend on the model and on the seed, and a cache bug changes tokens.
const model = Transformer.fromArrays(
  tiny.transformer,
  tiny.dvae,
  initTransformerParams(tiny.transformer, tiny.dvae, 3).map((a) => a.map((x) => x * 4)),
);

const caption = (k: number) =>
  Int32Array.from({ length: L }, (_, i) => (i < 3 + k ? 1 + ((i * 5 + k * 11) % 63) : 0));

function runSession(rows: SampleRow[]): Int32Array[] {
  const s = createSampler(model).start(rows);
  while (!s.done) s.step();
  return rows.map((_, i) => s.tokens(i));
}

test('sampling: KV-cache sampling gives the cache-free reference tokens for the same seeds', () => {
  const rows: SampleRow[] = [
    { text: caption(0), seed: 1 },
    { text: caption(1), seed: 2, temperature: 0.7 },
    { text: caption(2), seed: 3, topK: 5 },
    { text: caption(3), seed: 4, topP: 0.8, temperature: 1.3 },
    { text: caption(4), seed: 5, temperature: 0 },
  ];
  const cached = runSession(rows);
  const reference = sampleWithoutCache(model, rows);
  rows.forEach((_, i) => assert.deepEqual([...cached[i]!], [...reference[i]!], `row ${i}`));
  // The logits themselves agree: cached decode vs a full forward over the same prefix.
  const prefix = cached[0]!.subarray(0, 7);
  const viaCache = tf.tidy(() => {
    let { cache, logits } = model.prefill(rows[0]!.text, 1);
    for (const z of prefix) ({ cache, logits } = model.decode(cache, Int32Array.of(z)));
    return logits.arraySync()[0]!;
  });
  const full = tf.tidy(
    () =>
      model
        .logits(tf.tensor2d(rows[0]!.text, [1, L], 'int32'), tf.tensor2d(prefix, [1, 7], 'int32'))
        .image.arraySync()[0]![7]!,
  );
  viaCache.forEach((x, i) => assert.ok(Math.abs(x - full[i]!) < 1e-4, `logit ${i}: ${x} vs ${full[i]}`));
  // The tokens are not degenerate: the rows differ and use several codes.
  assert.ok(new Set(cached.map((t) => t.join(','))).size === rows.length);
  assert.ok(new Set(cached[0]).size > 3);
});

test('sampling: with full attention too, KV-cache sampling gives the cache-free reference tokens', () => {
  const cfg = { ...tiny.transformer, attention: 'full' as const };
  const full = Transformer.fromArrays(
    cfg,
    tiny.dvae,
    initTransformerParams(cfg, tiny.dvae, 3).map((a) => a.map((x) => x * 4)),
  );
  const rows: SampleRow[] = [
    { text: caption(0), seed: 1 },
    { text: caption(2), seed: 3, topK: 5 },
  ];
  const s = createSampler(full).start(rows);
  while (!s.done) s.step();
  const reference = sampleWithoutCache(full, rows);
  rows.forEach((_, i) => assert.deepEqual([...s.tokens(i)], [...reference[i]!], `row ${i}`));
  assert.notDeepEqual(
    [...s.tokens(0)],
    [...runSession([rows[0]!])[0]!],
    'full attention changes the samples',
  );
  full.dispose();
});

test('sampling: the same seed gives the same tokens whatever the batch composition', () => {
  const alone = runSession([{ text: caption(1), seed: 42, topK: 8 }])[0]!;
  const mixed = runSession([
    { text: caption(3), seed: 7 },
    { text: caption(1), seed: 42, topK: 8 },
    { text: caption(2), seed: 9, temperature: 0.5 },
  ])[1]!;
  assert.deepEqual([...mixed], [...alone]);
  const other = runSession([{ text: caption(1), seed: 43, topK: 8 }])[0]!;
  assert.notDeepEqual([...other], [...alone], 'another seed gives another image');
  // n images per prompt: image k is (seed, index k), so image 1 of seed 42 is the row with index 1.
  const many = sampleImageTokens(model, caption(1), { n: 3, seed: 42, topK: 8 });
  assert.deepEqual([...many.subarray(0, N)], [...alone]);
  const second = runSession([{ text: caption(1), seed: 42, topK: 8, index: 1 }])[0]!;
  assert.deepEqual([...many.subarray(N, 2 * N)], [...second]);
  assert.notDeepEqual([...second], [...alone]);
});

test('sampling: no tensor leaks per token, and the cache is released when done', () => {
  const before = tf.memory().numTensors;
  const s = createSampler(model).start([0, 1, 2].map((k) => ({ text: caption(k), seed: k })));
  s.step();
  const perStep = tf.memory().numTensors - before; // the cache: K and V per layer
  assert.equal(perStep, 2 * tiny.transformer.layers);
  while (!s.done) {
    s.step();
    assert.equal(tf.memory().numTensors - before, s.done ? 0 : perStep, `after token ${s.position}`);
  }
  assert.equal(s.position, N);
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => s.step(), SamplerSessionError);
});

test('sampling: cancel drops a row within one step and leaves the others unchanged', () => {
  const rows = [0, 1, 2].map((k) => ({ text: caption(k), seed: 10 + k }));
  const full = runSession(rows);
  const before = tf.memory().numTensors;
  const s = createSampler(model).start(rows);
  for (let j = 0; j < 5; j++) s.step();
  s.cancel(1);
  const r = s.step();
  assert.deepEqual(r.advanced, [0, 2], 'the cancelled row takes no part in the next step');
  assert.equal(s.tokens(1).length, 5, 'a cancelled row keeps the tokens it had');
  assert.deepEqual([...s.tokens(1)], [...full[1]!.subarray(0, 5)]);
  assert.ok(s.isCancelled(1));
  while (!s.done) s.step();
  assert.deepEqual([...s.tokens(0)], [...full[0]!]);
  assert.deepEqual([...s.tokens(2)], [...full[2]!]);
  assert.equal(tf.memory().numTensors, before);
  // Cancelling every row ends the session and frees its cache at once.
  const t = createSampler(model).start(rows.slice(0, 2));
  t.step();
  t.cancel(0);
  t.cancel(1);
  assert.ok(t.done);
  assert.equal(tf.memory().numTensors, before);
  assert.throws(() => t.cancel(5), SamplerSessionError);
});

test('sampling: guided rows follow u + s·(c − u) of the empty caption, in one batched pass with their partners', () => {
  const rows: SampleRow[] = [
    { text: caption(0), seed: 1, guidanceScale: 3 },
    { text: caption(1), seed: 2 },
    { text: caption(2), seed: 3, guidanceScale: 0, topK: 6 },
    { text: caption(3), seed: 4, guidanceScale: 1.5, temperature: 0.8 },
  ];
  const cached = runSession(rows);
  const reference = sampleWithoutCache(model, rows);
  rows.forEach((_, i) => assert.deepEqual([...cached[i]!], [...reference[i]!], `row ${i}`));
  // Scale 1 is plain sampling; another scale changes the image; the same guided row alone or in a mixed
  // batch gives the same tokens.
  const plain = runSession([{ text: caption(0), seed: 1 }])[0]!;
  assert.deepEqual([...runSession([{ text: caption(0), seed: 1, guidanceScale: 1 }])[0]!], [...plain]);
  assert.notDeepEqual([...cached[0]!], [...plain]);
  assert.deepEqual([...runSession([rows[0]!])[0]!], [...cached[0]!]);
  // Scale 0 ignores the caption: any caption gives the unconditional image.
  const uncond = runSession([{ text: caption(5), seed: 3, guidanceScale: 0, topK: 6 }])[0]!;
  assert.deepEqual([...uncond], [...cached[2]!]);
  // A guided row holds two cache rows (its own and its partner's); cancelling it drops both.
  const before = tf.memory().numTensors;
  const sess = createSampler(model).start(rows);
  sess.step();
  sess.cancel(0);
  sess.step();
  while (!sess.done) sess.step();
  assert.deepEqual([...sess.tokens(3)], [...cached[3]!], 'the other rows go on unchanged');
  assert.equal(tf.memory().numTensors, before);
  assert.throws(
    () => createSampler(model).start([{ text: caption(0), seed: 1, guidanceScale: -1 }]),
    /rows\[0\]\.guidanceScale = -1: must be a finite number ≥ 0/,
  );
});

test('sampling: temperature, top-k and top-p follow their definitions', () => {
  const logits = [2, 1, 0, 3, -1]; // order by likelihood: 3, 0, 1, 2, 4
  const freq = (opts: { temperature: number; topK: number; topP: number }) => {
    const counts = new Array(logits.length).fill(0);
    const M = 20000;
    for (let i = 0; i < M; i++) counts[pickToken(logits, opts, (i + 0.5) / M)]++;
    return counts.map((c) => c / M);
  };
  const softmax = (xs: number[]) => {
    const e = xs.map((x) => Math.exp(x - Math.max(...xs)));
    const s = e.reduce((a, b) => a + b, 0);
    return e.map((x) => x / s);
  };
  const p = softmax(logits);
  freq({ temperature: 1, topK: 0, topP: 1 }).forEach((f, i) =>
    assert.ok(Math.abs(f - p[i]!) < 1e-3, `token ${i}: ${f} vs ${p[i]}`),
  );
  const hot = softmax(logits.map((x) => x / 2));
  freq({ temperature: 2, topK: 0, topP: 1 }).forEach((f, i) => assert.ok(Math.abs(f - hot[i]!) < 1e-3));
  const k2 = freq({ temperature: 1, topK: 2, topP: 1 });
  assert.deepEqual(
    k2.map((f) => f > 0),
    [true, false, false, true, false],
  );
  assert.ok(Math.abs(k2[3]! - p[3]! / (p[3]! + p[0]!)) < 1e-3);
  // p(3) ≈ 0.64 < 0.7 ≤ p(3) + p(0): the nucleus is {3, 0}.
  assert.deepEqual(
    freq({ temperature: 1, topK: 0, topP: 0.7 }).map((f) => f > 0),
    [true, false, false, true, false],
  );
  assert.equal(pickToken(logits, { temperature: 0, topK: 0, topP: 1 }, 0.999), 3);
  assert.equal(pickToken([1, 1, 1], { temperature: 0, topK: 0, topP: 1 }, 0.5), 0, 'ties go to the lower id');
});

test('sampling: bad options are named like request fields', () => {
  const s = createSampler(model);
  const ok = { text: caption(0), seed: 1 };
  const field = (rows: SampleRow[], f: string) =>
    assert.throws(
      () => s.start(rows),
      (e) => e instanceof SamplingOptionError && e.field === f,
    );
  field([ok, { ...ok, temperature: -1 }], 'rows[1].temperature');
  field([{ ...ok, topK: 1.5 }], 'rows[0].topK');
  field([{ ...ok, topP: 0 }], 'rows[0].topP');
  field([{ ...ok, seed: -1 }], 'rows[0].seed');
  field([{ ...ok, text: new Int32Array(L + 1) }], 'rows[0].text');
  field([{ ...ok, text: new Int32Array(L).fill(999) }], 'rows[0].text');
  field([], 'rows');
  assert.throws(
    () => sampleImageTokens(model, caption(0), { n: 0, seed: 1 }),
    (e) => e instanceof SamplingOptionError && e.field === 'n',
  );
});

test('sampling: decoded pixels become PNG bytes that decode back to the same pixels', async () => {
  const res = 4;
  const rgb = Uint8Array.from({ length: 2 * res * res * 3 }, (_, i) => (i * 37) % 256);
  const pngs = await rgbToPngs(rgb, 2);
  assert.equal(pngs.length, 2);
  pngs.forEach((bytes, k) => {
    const img = PNG.sync.read(Buffer.from(bytes));
    assert.equal(img.width, res);
    for (let p = 0; p < res * res; p++) {
      for (let c = 0; c < 3; c++) assert.equal(img.data[p * 4 + c], rgb[k * res * res * 3 + p * 3 + c]);
    }
  });
  await assert.rejects(rgbToPngs(rgb.subarray(1), 2), SamplingOptionError);
});

test('sampling: sampled tokens go through the dVAE decoder into PNG images', async () => {
  const dvae = Dvae.fromParams(tiny.dvae, initDvaeParams(tiny.dvae, 0));
  const tokens = sampleImageTokens(model, caption(2), { n: 2, seed: 5 });
  const rgb = dvae.decode(tokens);
  const pngs = await tokensToPngs(dvae, tokens, 2);
  const res = tiny.dvae.resolution;
  pngs.forEach((bytes, k) => {
    const img = PNG.sync.read(Buffer.from(bytes));
    assert.equal(img.width, res);
    assert.equal(img.height, res);
    for (let p = 0; p < res * res; p++) {
      for (let c = 0; c < 3; c++) assert.equal(img.data[p * 4 + c], rgb[k * res * res * 3 + p * 3 + c]);
    }
  });
  dvae.dispose();
});
