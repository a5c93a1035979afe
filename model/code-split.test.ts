import { test } from 'node:test';
import assert from 'node:assert/strict';
import { applySplits, cellPixels, codeDistortion, planSplits, type SplitProbe } from './code-split.ts';
import type { CodebookArrays } from './code-restart.ts';

// Code 0 holds two kinds of cell (pixels all 0.2 or all 0.8), told apart by the encoder's first feature;
// code 1 holds one kind (0.5); codes 2 and 3 are unused.
function probe(): SplitProbe {
  const kinds = [
    { code: 0, px: 0.2, h: [1, 0, 0.5] },
    { code: 0, px: 0.8, h: [0, 1, 0.5] },
    { code: 1, px: 0.5, h: [0.5, 0.5, 0.5] },
  ];
  const cells = [0, 1, 2, 0, 1, 2, 0, 1].map((k) => kinds[k]!);
  const D = 4;
  return {
    codes: Int32Array.from(cells, (c) => c.code),
    pixels: Float32Array.from(cells.flatMap((c) => Array<number>(D).fill(c.px))),
    features: Float32Array.from(cells.flatMap((c) => c.h)),
    codebookSize: 4,
  };
}

test("code-split: distortion is the squared spread of each code's cells around their mean", () => {
  const { count, distortion } = codeDistortion(probe());
  assert.deepEqual([...count], [6, 2, 0, 0]);
  // Code 0: six cells of 4 pixels at ±0.3 from the mean 0.5.
  assert.ok(Math.abs(distortion[0]! - 6 * 4 * 0.09) < 1e-5, `${distortion[0]}`);
  assert.equal(distortion[1], 0);
});

test('code-split: the spread code splits into the first unused one, each half preferring its own code', () => {
  const p = probe();
  const splits = planSplits(p, 4);
  assert.equal(splits.length, 1, 'a code with one kind of cell is never split');
  const s = splits[0]!;
  assert.deepEqual([s.dead, s.source], [2, 0]);
  // Encoder weights [C = 3, K = 4], bias [4], decoder rows [4, E = 2]; moments follow.
  const arrays = (): CodebookArrays => ({
    encW: Float32Array.from({ length: 12 }, (_, i) => (i % 4 === 0 ? 0.1 * (i + 1) : 0)),
    encB: Float32Array.from([0.3, 0, -5, -5]),
    decW: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]),
  });
  const values = arrays();
  const moment = arrays();
  applySplits(values, [moment], splits);
  const logit = (h: number[], k: number) =>
    h.reduce((a, v, c) => a + v * values.encW[c * 4 + k]!, values.encB[k]!);
  for (const [h, want] of [
    [[1, 0, 0.5], 2],
    [[0, 1, 0.5], 0],
  ] as const) {
    const gap = logit([...h], want) - logit([...h], want === 2 ? 0 : 2);
    assert.ok(Math.abs(gap - 2) < 1e-5, `the half at ${h} prefers code ${want} by 2 nats, got ${gap}`);
  }
  // The two logits sum to twice the old one: the split moves probability between them, not away.
  const h = [0.3, 0.9, 0.5];
  const before = arrays();
  const old = h.reduce((a, v, c) => a + v * before.encW[c * 4]!, before.encB[0]!);
  assert.ok(Math.abs(logit(h, 0) + logit(h, 2) - 2 * old) < 1e-5);
  assert.deepEqual([...values.decW.subarray(4, 6)], [1, 2], 'the dead code decodes as its source');
  assert.deepEqual([...values.decW.subarray(2, 4)], [3, 4], 'other codes untouched');
  assert.equal(moment.encB[2], moment.encB[0]);
  assert.deepEqual([...moment.decW.subarray(4, 6)], [1, 2]);
});

test('code-split: no splits without unused codes, within the cap, or with identical halves', () => {
  const full = { ...probe(), codebookSize: 2 };
  assert.deepEqual(planSplits(full, 4), []);
  assert.deepEqual(planSplits(probe(), 0), []);
  const blind = probe();
  blind.features.fill(1); // the encoder does not tell the halves apart: no direction to split along
  assert.deepEqual(planSplits(blind, 4), []);
});

test("code-split: cellPixels lays out each grid cell's pixels in raster order", () => {
  // One 4×4 image, grid 2: cells of 2×2 pixels; pixel (y, x) has value 16y + 4x + channel (of 255).
  const img = new Uint8Array(4 * 4 * 3);
  for (let y = 0; y < 4; y++)
    for (let x = 0; x < 4; x++) for (let c = 0; c < 3; c++) img[(y * 4 + x) * 3 + c] = 16 * y + 4 * x + c;
  const px = cellPixels(img, 4, 2);
  assert.equal(px.length, 4 * 12);
  const cell3 = [...px.subarray(36, 48)].map((v) => Math.round(v * 255));
  assert.deepEqual(cell3, [40, 41, 42, 44, 45, 46, 56, 57, 58, 60, 61, 62]);
});
