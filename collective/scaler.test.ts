import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WireScaler } from './scaler.ts';

const cfg = {
  scaleInitLog2: 13,
  scaleMinLog2: 7,
  scaleMaxLog2: 24,
  scaleGrowthLog2: 1 / 1000,
  scaleBackoffInterval: 125,
};

test('scaler: starts at W·2^13 and grows ×2^(1/1000) per clean update', () => {
  const s = new WireScaler(2, 4, cfg);
  assert.equal(s.scales[0], 4 * 2 ** 13);
  for (let step = 0; step < 1000; step++) s.update(step, [false, false], true);
  assert.ok(Math.abs(s.scales[0]! / (4 * 2 ** 14) - 1) < 1e-12, `${s.scales[0]}`);
});

test('scaler: Inf/NaN divides by √2 at most once per 125 updates, per group; a skipped step does not grow', () => {
  const s = new WireScaler(2, 1, cfg);
  const s0 = s.scales[0]!;
  s.update(10, [true, false], false);
  assert.equal(s.scales[0], s0 / Math.SQRT2);
  assert.equal(s.scales[1], s0, 'skipped: the clean group does not grow either');
  s.update(11, [true, false], false);
  s.update(134, [true, false], false);
  assert.equal(s.scales[0], s0 / Math.SQRT2, 'second decrease within 125 updates is not applied');
  s.update(135, [true, false], false);
  assert.ok(Math.abs(s.scales[0]! / (s0 / 2) - 1) < 1e-12);
});

test('scaler: clamps to W·[2^7, 2^24] and restores exactly', () => {
  const s = new WireScaler(1, 2, cfg);
  for (let k = 0; k < 40; k++) s.update(k * 125, [true], false);
  assert.equal(s.scales[0], 2 * 2 ** 7);
  const t = new WireScaler(1, 2, { ...cfg, scaleGrowthLog2: 1 });
  for (let k = 0; k < 40; k++) t.update(k, [false], true);
  assert.equal(t.scales[0], 2 * 2 ** 24);
  const u = new WireScaler(1, 2, cfg);
  u.restore(s.state());
  assert.deepEqual(u.state(), s.state());
  assert.throws(() => u.restore({ scales: [1, 2], lastBackoff: [null, null] }), RangeError);
});
