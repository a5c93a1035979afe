import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HELD_OUT_COMPOSITIONS, renderShape, shapeItem, SHAPE_COLORS } from '../data/shapes.ts';
import { codebookUsage, measureDvae, shapesReconstruction } from './dvae-quality.ts';

const canvas = 32;
const truth = HELD_OUT_COMPOSITIONS.map((_, i) => shapeItem(i, 'heldout', 1234));
const images = new Uint8Array(truth.length * canvas * canvas * 3);
truth.forEach((s, i) => images.set(renderShape(s, canvas), i * canvas * canvas * 3));

test('dvae quality: codebook usage counts codes and their perplexity', () => {
  assert.deepEqual(codebookUsage(Int32Array.from([3, 3, 3, 3]), 8), { codesUsed: 1, perplexity: 1 });
  const u = codebookUsage(Int32Array.from([0, 1, 2, 3, 0, 1, 2, 3]), 8);
  assert.equal(u.codesUsed, 4);
  assert.ok(Math.abs(u.perplexity - 4) < 1e-9);
});

test('dvae quality: perfect reconstructions are right on all four, every colour distinct', () => {
  const r = shapesReconstruction(images, truth, canvas);
  assert.deepEqual(r.accuracy, { color: 1, shape: 1, size: 1, position: 1, all: 1 });
  assert.equal(r.colorsDistinct, 6);
});

test('dvae quality: a decoder that paints every shape red keeps one colour', () => {
  const red = images.slice();
  const [r, g, b] = SHAPE_COLORS.red;
  for (let i = 0; i < red.length; i += 3) {
    if (red[i] === 255 && red[i + 1] === 255 && red[i + 2] === 255) continue;
    [red[i], red[i + 1], red[i + 2]] = [r, g, b];
  }
  const q = shapesReconstruction(red, truth, canvas);
  assert.equal(q.colorsDistinct, 1);
  assert.equal(q.colorAccuracy.red, 1);
  assert.equal(q.colorAccuracy.blue, 0);
  assert.equal(q.accuracy.shape, 1);
});

test('dvae quality: measureDvae runs encode → decode and scores MSE, usage and attributes', () => {
  const per = canvas * canvas * 3;
  // A "codec" whose token is the image index and whose decoder returns the original: lossless.
  const codec = {
    encode: (x: Uint8Array) => Int32Array.from({ length: x.length / per }, (_, i) => i % 5),
    decode: () => images,
  };
  const q = measureDvae(codec, images, { resolution: canvas, codebookSize: 8, truth });
  assert.equal(q.images, truth.length);
  assert.equal(q.mse, 0);
  assert.equal(q.codesUsed, 5);
  assert.equal(q.shapes!.accuracy.all, 1);
});
