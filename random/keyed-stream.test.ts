import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RngKeyError } from './key-error.ts';
import { mixSeed, rngFor } from './keyed-stream.ts';

test('rng: the same key gives the same stream, a different key another', () => {
  const a = rngFor(7, 'crop', 3);
  const b = rngFor(7, 'crop', 3);
  const c = rngFor(7, 'crop', 4);
  const sa = Array.from({ length: 16 }, () => a.uint32());
  assert.deepEqual(
    Array.from({ length: 16 }, () => b.uint32()),
    sa,
  );
  assert.notDeepEqual(
    Array.from({ length: 16 }, () => c.uint32()),
    sa,
  );
  // Part boundaries matter: (1, 23) and (12, 3) are different keys.
  assert.notEqual(rngFor(1, 23).uint32(), rngFor(12, 3).uint32());
  assert.notEqual(rngFor('ab', 'c').uint32(), rngFor('a', 'bc').uint32());
  assert.equal(mixSeed(1, 2, 3), mixSeed(1, 2, 3));
  assert.notEqual(mixSeed(1, 2, 3), mixSeed(1, 2, 4));
  // Large positions (step · batch beyond 2^32) stay distinct.
  assert.notEqual(rngFor(2 ** 40).uint32(), rngFor(0).uint32());
});

test('rng: int(n) stays in range and is close to uniform', () => {
  const r = rngFor(1, 'uniform');
  const counts = new Array(6).fill(0);
  const draws = 60_000;
  for (let i = 0; i < draws; i++) counts[r.int(6)]++;
  for (const c of counts) assert.ok(Math.abs(c - draws / 6) < 0.05 * (draws / 6), `counts ${counts}`);
  assert.equal(r.int(1), 0);
  for (let i = 0; i < 1000; i++) {
    const x = r.next();
    assert.ok(x >= 0 && x < 1);
  }
  assert.throws(() => r.int(0), RangeError);
  assert.throws(() => r.int(2.5), RangeError);
});

test('rng: bad key parts are named', () => {
  assert.throws(() => rngFor(-1), RngKeyError);
  assert.throws(() => rngFor(1.5), RngKeyError);
  assert.throws(() => mixSeed(Number.NaN), RngKeyError);
});
