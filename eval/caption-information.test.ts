import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadSpec } from '../config/index.ts';
import { initTfBackend, initTransformerParams, Transformer, transformerParamSpecs } from '../model/index.ts';
import { captionDerangement, captionInformation, CaptionInformationError } from './caption-information.ts';

test('caption information: the derangement never pairs an example with its own caption text', () => {
  const L = 3;
  // Captions a a a b b c (runs of equal text up to 3 long).
  const rows = [[1], [1], [1], [2], [2], [3]];
  const text = new Int32Array(rows.length * L);
  rows.forEach((r, i) => text.set(r, i * L));
  const pi = captionDerangement(text, rows.length, L);
  assert.deepEqual([...pi].sort(), [0, 1, 2, 3, 4, 5], 'a permutation');
  for (let i = 0; i < rows.length; i++) assert.notEqual(rows[pi[i]!]![0], rows[i]![0], `example ${i}`);
});

test('caption information: exactly 0 for a model whose text positions carry nothing', async () => {
  await initTfBackend('wasm');
  const spec = loadSpec('tiny');
  const specs = transformerParamSpecs(spec.transformer, spec.dvae);
  const params = initTransformerParams(spec.transformer, spec.dvae, 3);
  // Text token, position and padding embeddings zero: every caption gives the same input.
  specs.forEach((s, i) => {
    if (s.name.startsWith('text.')) params[i]!.fill(0);
  });
  const model = Transformer.fromArrays(spec.transformer, spec.dvae, params);
  const { textLen: L, imageLen: N, imageVocab: K } = model.dims;
  const n = 6;
  const text = new Int32Array(n * L);
  const image = new Int32Array(n * N);
  for (let i = 0; i < n; i++) {
    for (let p = 0; p <= i % 4; p++) text[i * L + p] = 2 + ((i + p) % 9);
    for (let j = 0; j < N; j++) image[i * N + j] = (i * 7 + j * 3) % K;
  }
  const r = captionInformation(model, text, image, n, 4);
  assert.equal(r.examples, n);
  assert.ok(r.lossTrue > 0 && Number.isFinite(r.lossTrue));
  assert.ok(Math.abs(r.information) < 1e-5, `information ${r.information}`);
  // With the text path restored (a fresh init), the captions do change the predictions.
  const live = Transformer.fromArrays(
    spec.transformer,
    spec.dvae,
    initTransformerParams(spec.transformer, spec.dvae, 3),
  );
  assert.notEqual(
    captionInformation(live, text, image, n).lossOther,
    captionInformation(live, text, image, n).lossTrue,
  );
  assert.throws(
    () => captionInformation(model, text.subarray(0, L), image.subarray(0, N), 1),
    CaptionInformationError,
  );
  model.dispose();
  live.dispose();
});
