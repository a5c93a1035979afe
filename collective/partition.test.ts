import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chunkRange, layout } from './partition.ts';

test('partition: chunks tile the array exactly once, none empty, none over the limit', () => {
  for (const [n, w, ce] of [
    [0, 1, 4],
    [0, 4, 4],
    [1, 4, 4],
    [3, 4, 1],
    [10, 3, 3],
    [1000, 4, 7],
    [2_621_440, 4, 261_120],
    [17, 2, 100],
  ] as const) {
    const l = layout(n, w, ce);
    const seen = new Uint8Array(n);
    for (let j = 0; j < w; j++) {
      for (let c = 0; c < l.chunks[j]!; c++) {
        const [a, b] = chunkRange(l, j, c);
        assert.ok(b > a && b - a <= ce, `n=${n} w=${w} seg ${j} chunk ${c}: [${a}, ${b})`);
        for (let i = a; i < b; i++) seen[i]!++;
      }
    }
    assert.ok(
      seen.every((s) => s === 1),
      `n=${n} w=${w}: every index exactly once`,
    );
  }
});

test('partition: segments are balanced to within one element', () => {
  const l = layout(10, 4, 100);
  const sizes = l.segStart.slice(1).map((e, j) => e - l.segStart[j]!);
  assert.deepEqual(sizes, [2, 3, 2, 3]);
});

test('partition: rejects nonsense', () => {
  assert.throws(() => layout(-1, 2, 4), RangeError);
  assert.throws(() => layout(4, 0, 4), RangeError);
  assert.throws(() => layout(4, 2, 0), RangeError);
});

test('partition: given segments are used as they are (an empty one included), and must cut the array', () => {
  const l = layout(10, 3, 4, [0, 6, 6, 10]);
  assert.deepEqual(l.segStart, [0, 6, 6, 10]);
  assert.deepEqual(l.chunks, [2, 0, 1]);
  assert.throws(() => layout(10, 3, 4, [0, 6, 10]), RangeError);
  assert.throws(() => layout(10, 3, 4, [0, 7, 6, 10]), RangeError);
  assert.throws(() => layout(10, 3, 4, [1, 6, 6, 10]), RangeError);
});
