import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderShape, type ShapeComposition } from '../data/shapes.ts';
import { codeUsage, shiftEntropy, type EncodedShape } from './code-usage.ts';

const R = 32;
const G = 8;

/** An image of `c` whose foreground cells get codes from `codeOf(k)` (k: the k-th foreground cell), 0 elsewhere. */
function encoded(c: ShapeComposition, codeOf: (k: number) => number): EncodedShape & { fg: number } {
  const rgb = renderShape(c, R);
  const tokens = new Int32Array(G * G);
  let k = 0;
  for (let cy = 0; cy < G; cy++)
    for (let cx = 0; cx < G; cx++) {
      let on = false;
      for (let y = cy * 4; y < cy * 4 + 4; y++)
        for (let x = cx * 4; x < cx * 4 + 4; x++)
          if (rgb.subarray((y * R + x) * 3, (y * R + x) * 3 + 3).some((v) => v !== 255)) on = true;
      if (on) tokens[cy * G + cx] = codeOf(k++);
    }
  return { composition: c, rgb, tokens, fg: k };
}

const at = (color: string, shape: string): ShapeComposition =>
  ({ color, shape, size: 'large', position: 'center' }) as ShapeComposition;

test('code usage: each held-out cell is counted as unseen, unseen with its colour, or unseen with its shape', () => {
  const train = [
    encoded(at('red', 'square'), () => 5),
    encoded(at('blue', 'circle'), () => 6),
    encoded(at('blue', 'square'), () => 5),
  ];
  // Held out: a red circle whose foreground cells take codes 5, 6, 9 in turn.
  const held = encoded(at('red', 'circle'), (k) => [5, 6, 9][k % 3]!);
  const u = codeUsage(train, [held], R, G);
  assert.equal(u.trainCodes, 2);
  assert.deepEqual(u.codesByColours, [1, 1], 'code 6 serves blue only, code 5 red and blue');
  assert.equal(u.heldOut.length, 1);
  const row = u.heldOut[0]!;
  assert.equal(row.composition, 'red circle large');
  assert.equal(row.cells, held.fg);
  const share = (r: number) =>
    Array.from({ length: held.fg }, (_, k) => k % 3 === r).filter(Boolean).length / held.fg;
  assert.equal(row.unseenWithShape, share(0), 'code 5: seen with red, never in a circle');
  assert.equal(row.unseenWithColour, share(1), 'code 6: seen, never with red');
  assert.equal(row.unseen, share(2), 'code 9: never a training target');
  // A held-out image drawn only with codes trained in its colour and shape counts nothing.
  const fine = codeUsage(
    [encoded(at('red', 'circle'), () => 7)],
    [encoded(at('red', 'circle'), () => 7)],
    R,
    G,
  );
  assert.deepEqual(
    [fine.heldOut[0]!.unseen, fine.heldOut[0]!.unseenWithColour, fine.heldOut[0]!.unseenWithShape],
    [0, 0, 0],
  );
});

test('code usage: a token grid of the wrong size is named', () => {
  const bad = { ...encoded(at('red', 'square'), () => 1), tokens: new Int32Array(10) };
  assert.throws(() => codeUsage([bad], [], R, G), /10 tokens for a 8×8 grid/);
  assert.throws(() => codeUsage([], [], 30, G), /canvas 30 is not a multiple of grid 8/);
});

test('shift entropy: codes that follow the shift count given the composition and vanish given the shift', () => {
  const tokens = (first: number) => Int32Array.from({ length: G * G }, (_, c) => (c === 0 ? first : 3));
  const img = (color: string, dx: number, first: number): EncodedShape => ({
    composition: { ...at(color, 'square'), jitter: { dx, dy: 0 } },
    rgb: new Uint8Array(0),
    tokens: tokens(first),
  });
  // Per composition two shifts, twice each; cell 0's code is the shift's, every other cell's is 3.
  const train = [
    img('red', -1, 1),
    img('red', -1, 1),
    img('red', 1, 2),
    img('red', 1, 2),
    img('blue', 0, 4),
    img('blue', 0, 4),
    img('blue', 1, 5),
    img('blue', 1, 5),
  ];
  const h = shiftEntropy(train);
  assert.equal(h.images, 8);
  assert.ok(
    Math.abs(h.perCellGivenComposition - Math.log(2) / (G * G)) < 1e-12,
    String(h.perCellGivenComposition),
  );
  assert.equal(h.perCellGivenShift, 0);
  assert.ok(Math.abs(h.perImageShifts - Math.log(2)) < 1e-12);
  // A cell whose code does not follow the shift (noise the shift does not explain) stays open given it.
  const noisy = shiftEntropy([img('red', 0, 1), img('red', 0, 2)]);
  assert.ok(Math.abs(noisy.perCellGivenShift - Math.log(2) / (G * G)) < 1e-12);
  assert.equal(noisy.perImageShifts, 0);
  // Images without a position or shift (multi-shape scenes, held-out renderings) are left out.
  assert.equal(
    shiftEntropy([{ ...img('red', 0, 1), composition: { color: 'red', shape: 'square', size: 'large' } }])
      .images,
    0,
  );
});
