// Golden values: every generator's output for fixed keys, as float32/uint32 bits. They were taken from the
// implementations that trained the recorded runs and checkpoints; exact resume depends on them, so a change
// that alters one of these numbers is a change of every run's randomness, not a refactoring.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  fillGaussian,
  gumbels,
  mixSeed,
  normals,
  randomWords,
  rngFor,
  RngStream,
  uniforms,
} from './index.ts';

const u32 = (a: ArrayLike<number>) => Array.from(a, (x) => (x >>> 0).toString(16).padStart(8, '0')).join(' ');
const f32 = (a: Float32Array) => u32(new Uint32Array(a.buffer, a.byteOffset, a.length));

test('random: Philox streams give the recorded numbers', () => {
  const init = { seed: 1234, stream: RngStream.init, step: 7, rank: 0 };
  const gumbel = { seed: 42, stream: RngStream.gumbel, step: 123456, rank: 3 };
  const sampling = { seed: 0xffffffff, stream: RngStream.sampling, step: 5, rank: 2 };
  assert.deepEqual([RngStream.init, RngStream.gumbel, RngStream.sampling], [0, 1, 5]);
  assert.equal(u32(randomWords(init, 6)), 'ab269480 12ef5c9b da19d8e3 a44a4094 7dd0fd4e b125e862');
  assert.equal(f32(uniforms(sampling, 5)), '3db40e88 3edabea6 3f6f35bb 3e797cbc 3f7bd929');
  assert.equal(f32(gumbels(gumbel, 5)), 'bf19d035 3d433f61 3eb1de2b 3c18e63b bdfb9853');
  assert.equal(f32(normals(init, 5)), '3f4d5c71 3ecdeb6f beb6442a bee15829 bed99004');
});

test('random: keyed streams give the recorded numbers', () => {
  const r = rngFor(1234, 'order', 3);
  assert.equal(u32(Array.from({ length: 4 }, () => r.uint32())), '94f9a79d a9f4da50 7aec4503 79f16ce1');
  assert.deepEqual(
    Array.from({ length: 6 }, () => r.int(1000)),
    [615, 793, 357, 228, 8, 559],
  );
  assert.deepEqual([r.next(), r.next()], [0.20501830941066146, 0.6082244361750782]);
  const big = rngFor(2 ** 40 + 5, 'bpe-dropout');
  assert.equal(u32(Array.from({ length: 3 }, () => big.uint32())), '24b02bf7 be14ed8d 27a007c9');
  assert.deepEqual(
    [mixSeed(1234, 'bpe', 99), mixSeed(0), mixSeed('x', 2 ** 33)],
    [2685474319, 2689403475, 3989221521],
  );
});

test("random: the collective's Gaussian stream gives the recorded numbers", () => {
  assert.equal(
    f32(fillGaussian(new Float32Array(5), 1234, 17, 3)),
    '3f5aae82 bf5f5362 bbd94f45 3fbe9894 3f2297cf',
  );
  assert.equal(
    f32(fillGaussian(new Float32Array(4), 0xdeadbeef, 0, 0)),
    '3e32dfed bf5d1751 bf8785a1 bf16726e',
  );
});
