import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadSpec } from '../config/index.ts';
import {
  initialPlateauState,
  lrAt,
  observeLoss,
  ScheduleStepError,
  type PlateauConfig,
  type PlateauState,
} from './lr-plateau.ts';

const cfg: PlateauConfig = {
  lr: 1e-3,
  warmupSteps: 5,
  plateauPatience: 10,
  plateauThreshold: 1e-3,
  plateauHalvings: 5,
  plateauSmoothing: 0,
  steps: 1000,
};

/** Runs the schedule over `losses` (update i gets losses[i]) and returns the lr used at each update. */
function run(c: PlateauConfig, losses: number[]): { lrs: number[]; state: PlateauState } {
  let state = initialPlateauState();
  const lrs: number[] = [];
  losses.forEach((loss, step) => {
    state = observeLoss(c, state, step, loss);
    lrs.push(lrAt(c, state, step));
  });
  return { lrs, state };
}

test('lr-plateau: paper warm-up is linear to 4.5e-4 over 5,000 updates', () => {
  const paper = loadSpec('paper-12b').transformer;
  const s = initialPlateauState();
  assert.equal(lrAt(paper, s, 0), 4.5e-4 / 5000);
  assert.ok(Math.abs(lrAt(paper, s, 2499) - 4.5e-4 / 2) < 1e-18);
  assert.equal(lrAt(paper, s, 4999), 4.5e-4);
  assert.equal(lrAt(paper, s, 100_000), 4.5e-4);
  assert.equal(lrAt(paper, { ...s, halvings: 5 }, 100_000), 4.5e-4 / 32);
  assert.throws(() => lrAt(paper, s, -1), ScheduleStepError);
  assert.throws(() => lrAt(paper, s, 1.5), ScheduleStepError);
});

test('lr-plateau: a flat loss halves every patience window after warm-up, at most 5 times', () => {
  const { lrs, state } = run(cfg, Array(80).fill(2));
  // Warm-up ends at update 4 (bestStep = 4); the flat loss halves at 14, 24, 34, 44, 54 and then never again.
  const halvedAt = lrs.flatMap((lr, i) => (i > 0 && lr < lrs[i - 1]! ? [i] : []));
  assert.deepEqual(halvedAt, [14, 24, 34, 44, 54]);
  assert.equal(lrs[13], 1e-3);
  assert.equal(lrs[14], 1e-3 / 2);
  assert.equal(lrs[79], 1e-3 / 32);
  assert.equal(state.halvings, 5);
});

test('lr-plateau: steady improvement above the threshold never halves; below it does', () => {
  const improving = Array.from({ length: 60 }, (_, i) => 3 * 0.99 ** i); // 1% per update > 0.1%
  assert.equal(run(cfg, improving).state.halvings, 0);
  const creeping = Array.from({ length: 60 }, (_, i) => 3 * 0.9999 ** i); // 0.01% per update < 0.1%
  assert.ok(run(cfg, creeping).state.halvings > 0);
});

test('lr-plateau: an improvement restarts the clock', () => {
  const losses = [...Array(12).fill(2), 1.5, ...Array(12).fill(1.5)];
  const { lrs } = run(cfg, losses);
  // Without the drop at 12 the halving would come at 14; the drop moves it to 22.
  assert.equal(lrs[21], 1e-3);
  assert.equal(lrs[22], 1e-3 / 2);
});

test('lr-plateau: smoothing ignores single noisy updates and non-finite losses are skipped', () => {
  const smooth = { ...cfg, plateauSmoothing: 0.9 };
  let s = initialPlateauState();
  s = observeLoss(smooth, s, 0, 2);
  s = observeLoss(smooth, s, 1, 4);
  assert.ok(Math.abs(s.smoothed! - 2.2) < 1e-12);
  const before = s;
  assert.equal(observeLoss(smooth, s, 2, Number.NaN), before);
  assert.equal(observeLoss(smooth, s, 2, Number.POSITIVE_INFINITY), before);
});

test('lr-plateau: no warm-up starts at the peak and still counts from the first update', () => {
  const c = { ...cfg, warmupSteps: 0 };
  const { lrs } = run(c, Array(12).fill(1));
  assert.equal(lrs[0], 1e-3);
  assert.equal(lrs[9], 1e-3);
  assert.equal(lrs[10], 1e-3 / 2);
});

test('lr-plateau: the cool-down scales the last cooldownSteps updates linearly to zero, halvings included', () => {
  const c = { ...cfg, steps: 100, cooldownSteps: 20 };
  const s = initialPlateauState();
  assert.equal(lrAt(c, s, 79), 1e-3);
  assert.equal(lrAt(c, s, 80), 1e-3);
  assert.equal(lrAt(c, s, 90), 1e-3 / 2);
  assert.equal(lrAt(c, s, 99), 1e-3 / 20);
  assert.equal(lrAt(c, s, 100), 0);
  assert.equal(lrAt(c, s, 150), 0);
  assert.equal(lrAt(c, { ...s, halvings: 1 }, 90), 1e-3 / 4);
  // Warm-up and cool-down overlap when the budget is shorter than both: the factors multiply.
  const short = { ...c, steps: 10, cooldownSteps: 10 };
  assert.equal(lrAt(short, s, 0), (1e-3 / 5) * 1);
  assert.ok(Math.abs(lrAt(short, s, 4) - 1e-3 * 0.6) < 1e-18);
  // Off by default, and the paper's preset has none.
  assert.equal(lrAt(cfg, s, 999_999), 1e-3);
  assert.equal(lrAt({ ...cfg, cooldownSteps: 0 }, s, 999_999), 1e-3);
  assert.equal(loadSpec('paper-12b').transformer.cooldownSteps, undefined);
});
