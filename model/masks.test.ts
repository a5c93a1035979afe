import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  allowedKeys,
  attentionBias,
  attentionKindOf,
  attentionMask,
  layerKinds,
  LayerIndexError,
  MaskGeometryError,
  MASKED_SCORE,
  sequenceLength,
} from './masks.ts';

// A small version of the paper's figure 11: 3 text positions, a 4×4 image grid, a 3×3 conv kernel.
// Positions 0..2 are text; image position j sits at 3 + j. Expected sets are written out by hand.
const g = { textLen: 3, grid: 4, convKernel: 3 };
const text = [0, 1, 2];
const img = (...js: number[]) => js.map((j) => 3 + j);

test('masks: the paper layer rule for 64 layers (column where (i-2) mod 4 = 0, conv last)', () => {
  const kinds = layerKinds(64);
  assert.equal(kinds.length, 64);
  // 1-based i = 1, 2, 3, 4, 5, 6 → row, column, row, row, row, column
  assert.deepEqual(kinds.slice(0, 6), ['row', 'column', 'row', 'row', 'row', 'column']);
  assert.equal(kinds[61], 'column'); // i = 62
  assert.equal(kinds[62], 'row'); // i = 63
  assert.equal(kinds[63], 'conv'); // i = 64
  assert.equal(kinds.filter((k) => k === 'column').length, 16);
  assert.equal(kinds.filter((k) => k === 'row').length, 47);
  assert.deepEqual(layerKinds(2), ['row', 'conv']);
  assert.deepEqual(layerKinds(1), ['conv']);
  assert.deepEqual(layerKinds(3, 'full'), ['full', 'full', 'full']);
  assert.deepEqual(layerKinds(3, 'sparse'), layerKinds(3));
  assert.throws(() => attentionKindOf(4, 4), LayerIndexError);
  assert.throws(() => attentionKindOf(-1, 4), LayerIndexError);
});

test('masks: text positions are causal and never see the image', () => {
  for (const kind of ['row', 'column', 'conv', 'full'] as const) {
    assert.deepEqual(allowedKeys(kind, g, 0), [0]);
    assert.deepEqual(allowedKeys(kind, g, 1), [0, 1]);
    assert.deepEqual(allowedKeys(kind, g, 2), [0, 1, 2]);
  }
});

test('masks: row attention sees all text and the previous w+1 image positions, self included', () => {
  assert.deepEqual(allowedKeys('row', g, img(0)[0]), [...text, ...img(0)]);
  assert.deepEqual(allowedKeys('row', g, img(2)[0]), [...text, ...img(0, 1, 2)]);
  // j = 5 (row 1, col 1): back to j = 1, the same column of the previous row.
  assert.deepEqual(allowedKeys('row', g, img(5)[0]), [...text, ...img(1, 2, 3, 4, 5)]);
  assert.deepEqual(allowedKeys('row', g, img(15)[0]), [...text, ...img(11, 12, 13, 14, 15)]);
});

test('masks: column attention sees all text and the same column of every earlier row', () => {
  assert.deepEqual(allowedKeys('column', g, img(3)[0]), [...text, ...img(3)]);
  assert.deepEqual(allowedKeys('column', g, img(9)[0]), [...text, ...img(1, 5, 9)]);
  assert.deepEqual(allowedKeys('column', g, img(12)[0]), [...text, ...img(0, 4, 8, 12)]);
});

test('masks: the last layer is a causal 3x3 convolution with raster wraparound', () => {
  // j = 9 (row 2, col 1): row 1 cols 0..2 = j 4, 5, 6; row 2 cols 0..1 = j 8, 9.
  assert.deepEqual(allowedKeys('conv', g, img(9)[0]), [...text, ...img(4, 5, 6, 8, 9)]);
  // j = 4 (row 1, col 0): the kernel's left column wraps to j = 3 (row 0, col 3).
  assert.deepEqual(allowedKeys('conv', g, img(4)[0]), [...text, ...img(0, 1, 3, 4)]);
  assert.deepEqual(allowedKeys('conv', g, img(0)[0]), [...text, ...img(0)]);
  // An 11×11 kernel on the paper's 32×32 grid: 5 rows × 11 above plus 6 in the own row.
  const paper = { textLen: 256, grid: 32, convKernel: 11 };
  assert.equal(allowedKeys('conv', paper, 256 + 32 * 20 + 16).length, 256 + 5 * 11 + 6);
});

test('masks: full attention sees all text and every earlier image position', () => {
  assert.deepEqual(allowedKeys('full', g, img(0)[0]), [...text, ...img(0)]);
  assert.deepEqual(allowedKeys('full', g, img(9)[0]), [...text, ...img(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)]);
  assert.equal(allowedKeys('full', g, img(15)[0]).length, 3 + 16);
});

test('masks: the full matrix and its additive bias agree, every row non-empty', () => {
  const T = sequenceLength(g);
  assert.equal(T, 19);
  for (const kind of ['row', 'column', 'conv', 'full'] as const) {
    const m = attentionMask(kind, g);
    const b = attentionBias(kind, g);
    assert.equal(m.length, T * T);
    for (let q = 0; q < T; q++) {
      assert.equal(m[q * T + q], 1, `${kind} row ${q} must see itself`);
      for (let k = 0; k < T; k++) {
        assert.equal(b[q * T + k], m[q * T + k] ? 0 : MASKED_SCORE);
        if (k > q) assert.equal(m[q * T + k], 0, `${kind}: ${q} must not see the future ${k}`);
      }
    }
  }
});

test('masks: bad geometry is named', () => {
  assert.throws(
    () => attentionMask('row', { ...g, convKernel: 4 }),
    (e) => e instanceof MaskGeometryError && e.field === 'convKernel',
  );
  assert.throws(
    () => attentionMask('row', { ...g, grid: 0 }),
    (e) => e instanceof MaskGeometryError && e.field === 'grid',
  );
});
