import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeFp16, encodeFp16, FP16_MAX, roundTripFp16 } from './fp16.ts';

const enc = (xs: number[]) => Array.from(encodeFp16(new Float32Array(xs), new Uint16Array(xs.length)));

test('fp16: known encodings (normal, subnormal, zero, inf, nan)', () => {
  assert.deepEqual(
    enc([1, -2, 0.5, FP16_MAX, 2 ** -14, 2 ** -24, 0, -0]),
    [0x3c00, 0xc000, 0x3800, 0x7bff, 0x0400, 0x0001, 0x0000, 0x8000],
  );
  assert.deepEqual(enc([Infinity, -Infinity, 1e6, -70000]), [0x7c00, 0xfc00, 0x7c00, 0xfc00]);
  const [nan] = enc([NaN]);
  assert.equal(nan! & 0x7c00, 0x7c00);
  assert.notEqual(nan! & 0x3ff, 0);
});

test('fp16: round to nearest even at every tie, including into the exponent and to infinity', () => {
  // 1 + 2^-11 lies halfway between 1 and 1 + 2^-10: ties to even (1).
  assert.deepEqual(enc([1 + 2 ** -11, 1 + 3 * 2 ** -11]), [0x3c00, 0x3c02]);
  // 65520 is halfway between 65504 and 65536 (=Inf): ties to even → Inf; just below stays finite.
  assert.deepEqual(enc([65520, 65519]), [0x7c00, 0x7bff]);
  // half the smallest subnormal ties to 0; a hair above rounds up to it.
  assert.deepEqual(enc([2 ** -25, 2 ** -25 * 1.0001]), [0x0000, 0x0001]);
  // largest subnormal + half a step rounds up into the first normal.
  assert.deepEqual(enc([(1023.5 / 1024) * 2 ** -14]), [0x0400]);
});

test('fp16: every float16 survives a trip through float32 and back', () => {
  const all = new Uint16Array(65536);
  for (let i = 0; i < all.length; i++) all[i] = i;
  const f = decodeFp16(all, new Float32Array(65536));
  const back = encodeFp16(f, new Uint16Array(65536));
  for (let i = 0; i < all.length; i++) {
    const isNan = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
    if (isNan) assert.ok(Number.isNaN(f[i]!));
    else assert.equal(back[i], i, `0x${i.toString(16)}`);
  }
});

test('fp16: relative error of normal values is at most 2^-11', () => {
  const xs = new Float32Array(10_000);
  for (let i = 0; i < xs.length; i++)
    xs[i] = Math.fround((Math.sin(i * 12.9898) * 43758.5453) % 1) * 2 ** ((i % 28) - 14);
  const r = roundTripFp16(Float32Array.from(xs));
  for (let i = 0; i < xs.length; i++) {
    if (Math.abs(xs[i]!) < 2 ** -14) continue;
    assert.ok(Math.abs(r[i]! - xs[i]!) <= Math.abs(xs[i]!) * 2 ** -11, `${xs[i]} → ${r[i]}`);
  }
});
