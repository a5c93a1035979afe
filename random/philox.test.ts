import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RngKeyError } from './key-error.ts';
import {
  RngStream,
  gumbels,
  normals,
  philox4x32,
  randomWords,
  statelessSeed,
  statelessWords,
  uniforms,
} from './philox.ts';

const hex = (a: Uint32Array) => [...a].map((x) => x.toString(16).padStart(8, '0')).join(' ');

test('rng: Philox4x32-10 matches the Random123 known-answer vectors', () => {
  // Random123 tests/kat_vectors, "philox4x32 10" lines: counter[4] key[2] → result[4].
  assert.equal(hex(philox4x32([0, 0, 0, 0], [0, 0])), '6627e8d5 e169c58d bc57ac4c 9b00dbd8');
  assert.equal(
    hex(philox4x32([0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff], [0xffffffff, 0xffffffff])),
    '408f276d 41c83b0e a20bc7c6 6d5451fd',
  );
  assert.equal(
    hex(philox4x32([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0])),
    'd16cfe09 94fdcceb 5001e420 24126ea1',
  );
});

test("rng: statelessWords are TensorFlow's stateless Philox words for the seed pair", () => {
  // StatelessRandomUniformFullInt (int32 output, int64 seed [1234 + 2^32·1, 77 + 2^32·5]) returned these
  // eight words from TensorFlow 2.18's kernel; gumbel.test.ts compares against the kernel itself.
  const key = { seed: 1234, stream: 1, step: 77, rank: 5 };
  assert.deepEqual(statelessSeed(key), [1234, 1, 77, 5]);
  assert.equal(
    hex(statelessWords(key, 8)),
    '03a4ac5e 3e129090 0d915928 8f77d511 e3724c11 9e2cd534 b49f382b 30a6eb12',
  );
  assert.deepEqual(statelessWords(key, 3), statelessWords(key, 8).slice(0, 3));
});

test('rng: words are a pure function of (seed, stream, step, rank, index)', () => {
  const key = { seed: 7, stream: RngStream.gumbel, step: 123, rank: 1 };
  const a = randomWords(key, 10);
  assert.deepEqual(randomWords(key, 10), a);
  // A prefix does not depend on how many words were asked for.
  assert.deepEqual(randomWords(key, 3), a.slice(0, 3));
  for (const change of [{ seed: 8 }, { stream: RngStream.init }, { step: 124 }, { rank: 0 }]) {
    const b = randomWords({ ...key, ...change }, 10);
    assert.ok(
      b.some((x, i) => x !== a[i]),
      `changing ${JSON.stringify(change)} changes the words`,
    );
  }
});

test('rng: uniforms lie in (0, 1) with the right moments; gumbels and normals too', () => {
  const n = 200_000;
  const key = { seed: 1, stream: RngStream.sampling, step: 0, rank: 0 };
  const u = uniforms(key, n);
  let s = 0;
  let s2 = 0;
  for (const x of u) {
    assert.ok(x > 0 && x < 1);
    s += x;
    s2 += x * x;
  }
  assert.ok(Math.abs(s / n - 0.5) < 0.005, `mean ${s / n}`);
  assert.ok(Math.abs(s2 / n - 1 / 3) < 0.005, `second moment ${s2 / n}`);
  const g = gumbels(key, n);
  const gm = g.reduce((a, b) => a + b, 0) / n;
  assert.ok(Math.abs(gm - 0.5772) < 0.02, `Gumbel mean ${gm} (Euler–Mascheroni 0.5772)`);
  assert.ok(g.every(Number.isFinite));
  const z = normals(key, n + 1);
  assert.equal(z.length, n + 1);
  const zm = z.reduce((a, b) => a + b, 0) / z.length;
  const zv = z.reduce((a, b) => a + b * b, 0) / z.length - zm * zm;
  assert.ok(Math.abs(zm) < 0.01 && Math.abs(zv - 1) < 0.02, `normal mean ${zm}, variance ${zv}`);
});

test('rng: key coordinates outside uint32 are refused by name', () => {
  assert.throws(
    () => randomWords({ seed: -1, stream: 0, step: 0, rank: 0 }, 1),
    (e: unknown) => e instanceof RngKeyError && e.field === 'seed',
  );
  assert.throws(
    () => randomWords({ seed: 0, stream: 0, step: 2 ** 32, rank: 0 }, 1),
    (e: unknown) => e instanceof RngKeyError && e.field === 'step',
  );
  assert.throws(
    () => randomWords({ seed: 0, stream: 0, step: 0, rank: 0.5 }, 1),
    (e: unknown) => e instanceof RngKeyError && e.field === 'rank',
  );
});
