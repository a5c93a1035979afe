import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ALL_COMPOSITIONS,
  CAPTION_TEMPLATES,
  HELD_OUT,
  HELD_OUT_COMPOSITIONS,
  isHeldOut,
  parseShapesCaption,
  renderShape,
  SHAPE_COLORS,
  shapeCaptions,
  shapeItem,
  ShapeSpecError,
  TRAIN_COMPOSITIONS,
  type ShapeSpec,
} from './shapes.ts';

/** Pixels that are not white: count, bounding box, colours present. */
function measure(
  rgb: Uint8Array,
  S: number,
): { n: number; x0: number; x1: number; y0: number; y1: number; colors: Set<string>; rowWidths: number[] } {
  let n = 0;
  let x0 = S;
  let x1 = -1;
  let y0 = S;
  let y1 = -1;
  const colors = new Set<string>();
  const rowWidths = new Array(S).fill(0);
  for (let y = 0; y < S; y++) {
    for (let x = 0; x < S; x++) {
      const p = (y * S + x) * 3;
      if (rgb[p] === 255 && rgb[p + 1] === 255 && rgb[p + 2] === 255) continue;
      n++;
      colors.add(`${rgb[p]},${rgb[p + 1]},${rgb[p + 2]}`);
      x0 = Math.min(x0, x);
      x1 = Math.max(x1, x);
      y0 = Math.min(y0, y);
      y1 = Math.max(y1, y);
      rowWidths[y]++;
    }
  }
  return { n, x0, x1, y0, y1, colors, rowWidths };
}

test('shapes: colours, sizes and positions are exactly the issue text', () => {
  assert.deepEqual(SHAPE_COLORS, {
    red: [220, 40, 40],
    green: [40, 170, 70],
    blue: [40, 90, 220],
    yellow: [235, 200, 30],
    purple: [140, 60, 180],
    orange: [245, 130, 30],
  });
  // A large square at the centre of 32: side 16 centred on 16 → pixels 8..23.
  const sq = measure(
    renderShape({ color: 'red', shape: 'square', size: 'large', position: 'center' }, 32),
    32,
  );
  assert.deepEqual([sq.n, sq.x0, sq.x1, sq.y0, sq.y1], [256, 8, 23, 8, 23]);
  assert.deepEqual([...sq.colors], ['220,40,40']);
  // A small square at the top left: side 8 centred on (8, 8) → pixels 4..11.
  const small = measure(
    renderShape({ color: 'blue', shape: 'square', size: 'small', position: 'top left' }, 32),
    32,
  );
  assert.deepEqual([small.n, small.x0, small.x1, small.y0, small.y1], [64, 4, 11, 4, 11]);
  // Bottom right with jitter (+1, −1): centre (25, 23).
  const j = measure(
    renderShape(
      { color: 'green', shape: 'square', size: 'small', position: 'bottom right', jitter: { dx: 1, dy: -1 } },
      32,
    ),
    32,
  );
  assert.deepEqual([j.x0, j.x1, j.y0, j.y1], [21, 28, 19, 26]);
});

test('shapes: circle and triangle have their shape, inside their bounding box', () => {
  const c = measure(
    renderShape({ color: 'yellow', shape: 'circle', size: 'large', position: 'center' }, 32),
    32,
  );
  assert.deepEqual([c.x0, c.x1, c.y0, c.y1], [8, 23, 8, 23]);
  assert.ok(Math.abs(c.n - Math.PI * 64) < 12, `circle area ${c.n} ≈ π·8²`);
  const t = measure(
    renderShape({ color: 'purple', shape: 'triangle', size: 'large', position: 'center' }, 32),
    32,
  );
  assert.deepEqual([t.y0, t.y1], [8, 23]);
  assert.ok(t.x0 >= 8 && t.x1 <= 23);
  // Upright: rows widen from the apex down to a base of ~16 px; area ≈ ½·16·16.
  const rows = t.rowWidths.slice(8, 24);
  for (let i = 1; i < rows.length; i++) assert.ok(rows[i] >= rows[i - 1], `row widths ${rows}`);
  assert.ok(rows[0] <= 2 && rows[15] >= 15);
  assert.ok(Math.abs(t.n - 128) < 12, `triangle area ${t.n}`);
});

test('shapes: held-out pairs are never in the training compositions', () => {
  assert.equal(ALL_COMPOSITIONS.length, 6 * 3 * 2 * 9);
  assert.equal(HELD_OUT.length, 6);
  assert.equal(HELD_OUT_COMPOSITIONS.length, 6 * 2 * 9);
  assert.equal(TRAIN_COMPOSITIONS.length, 324 - 108);
  for (const c of TRAIN_COMPOSITIONS) assert.equal(isHeldOut(c), false);
  for (const h of HELD_OUT)
    assert.equal(TRAIN_COMPOSITIONS.filter((c) => c.color === h.color && c.shape === h.shape).length, 0);
  // Every training item, whatever its index, is a training composition; every word still appears in training.
  for (let i = 0; i < 1000; i++) assert.equal(isHeldOut(shapeItem(i, 'train', 9)), false);
  for (let i = 0; i < 108; i++) assert.equal(isHeldOut(shapeItem(i, 'heldout', 9)), true);
  for (const color of Object.keys(SHAPE_COLORS))
    assert.equal(TRAIN_COMPOSITIONS.filter((c) => c.color === color).length, 36);
});

test('shapes: items are deterministic from the seed, jitter within ±1 px', () => {
  const dx = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const a = shapeItem(i, 'train', 1234);
    assert.deepEqual(a, shapeItem(i, 'train', 1234));
    assert.ok(Math.abs(a.jitter!.dx) <= 1 && Math.abs(a.jitter!.dy) <= 1);
    dx.add(a.jitter!.dx);
  }
  assert.deepEqual([...dx].sort(), [-1, 0, 1]);
  const differs = Array.from(
    { length: 50 },
    (_, i) => JSON.stringify(shapeItem(i, 'train', 1)) !== JSON.stringify(shapeItem(i, 'train', 2)),
  );
  assert.ok(differs.some(Boolean), 'another seed gives other jitter');
});

test('shapes: every caption names all four attributes and parses back', () => {
  assert.ok(CAPTION_TEMPLATES.length >= 4);
  for (const c of ALL_COMPOSITIONS) {
    const caps = shapeCaptions(c);
    assert.equal(new Set(caps).size, caps.length);
    for (const cap of caps) assert.deepEqual(parseShapesCaption(cap), c, cap);
  }
  assert.equal(
    shapeCaptions({ color: 'red', shape: 'circle', size: 'small', position: 'top left' })[0],
    'a small red circle at the top left',
  );
  assert.deepEqual(parseShapesCaption('A LARGE Orange triangle in the centre'), {
    color: 'orange',
    shape: 'triangle',
    size: 'large',
    position: 'center',
  });
  assert.equal(parseShapesCaption('a red circle at the top'), null); // no size
  assert.equal(parseShapesCaption('a small red blue circle at the top'), null); // two colours
});

test('shapes: bad specs are named', () => {
  const ok: ShapeSpec = { color: 'red', shape: 'circle', size: 'small', position: 'top' };
  assert.throws(
    () => renderShape({ ...ok, color: 'magenta' as never }),
    (e: unknown) => e instanceof ShapeSpecError && e.field === 'color',
  );
  assert.throws(
    () => renderShape({ ...ok, position: 'middle' as never }),
    (e: unknown) => e instanceof ShapeSpecError && e.field === 'position',
  );
  assert.throws(
    () => renderShape({ ...ok, jitter: { dx: 2, dy: 0 } }),
    (e: unknown) => e instanceof ShapeSpecError && e.field === 'jitter',
  );
  assert.throws(
    () => renderShape(ok, 2),
    (e: unknown) => e instanceof ShapeSpecError && e.field === 'canvas',
  );
});
