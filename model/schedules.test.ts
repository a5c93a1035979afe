import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadSpec } from '../config/index.ts';
import { ScheduleStepError, betaAt, cosineAnneal, lrAt, tauAt } from './schedules.ts';

const paper = loadSpec('paper-12b').dvae;

test('schedules: the paper preset equals the paper at steps 0, 5,000, 150,000 and 1.2M', () => {
  // β: 0 → 6.6 over 5,000 updates.
  assert.equal(betaAt(0, paper), 0);
  assert.ok(Math.abs(betaAt(2_500, paper) - 3.3) < 1e-12);
  assert.equal(betaAt(5_000, paper), 6.6);
  assert.equal(betaAt(150_000, paper), 6.6);
  assert.equal(betaAt(1_200_000, paper), 6.6);
  // τ: 1 → 1/16 over 150,000 updates.
  assert.equal(tauAt(0, paper), 1);
  assert.ok(
    Math.abs(tauAt(5_000, paper) - (1 / 16 + ((15 / 16) * (1 + Math.cos(Math.PI / 30))) / 2)) < 1e-15,
  );
  assert.equal(tauAt(75_000, paper), (1 + 1 / 16) / 2);
  assert.equal(tauAt(150_000, paper), 1 / 16);
  assert.equal(tauAt(1_200_000, paper), 1 / 16);
  // lr: 1e-4 → 1.25e-6 over 1,200,000 updates.
  assert.equal(lrAt(0, paper), 1e-4);
  assert.ok(
    Math.abs(lrAt(5_000, paper) - (1.25e-6 + ((1e-4 - 1.25e-6) * (1 + Math.cos(Math.PI / 240))) / 2)) < 1e-18,
  );
  assert.ok(Math.abs(lrAt(600_000, paper) - (1e-4 + 1.25e-6) / 2) < 1e-18);
  assert.equal(lrAt(1_200_000, paper), 1.25e-6);
  assert.equal(lrAt(3_000_000, paper), 1.25e-6);
});

test('schedules: cosine shape is monotone and flat at both ends', () => {
  let prev = cosineAnneal(0, 1, 0, 100);
  for (let s = 1; s <= 120; s++) {
    const v = cosineAnneal(s, 1, 0, 100);
    assert.ok(v <= prev, `non-increasing at ${s}`);
    prev = v;
  }
  // Cosine, not linear: a quarter of the way it has moved (1 − cos(π/4))/2 ≈ 14.6%, not 25%.
  assert.ok(Math.abs(cosineAnneal(25, 1, 0, 100) - (1 + Math.SQRT1_2) / 2) < 1e-12);
});

test('schedules: scaled presets use their own lengths', () => {
  const shapes = loadSpec('shapes').dvae;
  assert.equal(betaAt(shapes.betaWarmupSteps, shapes), shapes.betaMax);
  assert.equal(tauAt(shapes.tauDecaySteps, shapes), shapes.tauEnd);
  assert.equal(lrAt(shapes.lrDecaySteps, shapes), shapes.lrEnd);
  assert.equal(lrAt(0, shapes), shapes.lr);
});

test('schedules: the lr warm-up ramps linearly to the cosine and then leaves it alone', () => {
  const cfg = { lr: 1e-3, lrEnd: 1e-5, lrDecaySteps: 1000, lrWarmupSteps: 100 };
  const plain = { ...cfg, lrWarmupSteps: undefined };
  assert.equal(lrAt(0, cfg), lrAt(0, plain) / 100);
  assert.equal(lrAt(49, cfg), lrAt(49, plain) / 2);
  assert.equal(lrAt(99, cfg), lrAt(99, plain));
  for (const s of [100, 500, 1000, 5000]) assert.equal(lrAt(s, cfg), lrAt(s, plain));
  assert.equal(lrAt(0, { ...cfg, lrWarmupSteps: 0 }), 1e-3);
  assert.throws(() => lrAt(-1, cfg), ScheduleStepError);
});

test('schedules: a bad step is named', () => {
  for (const bad of [-1, NaN, Infinity]) {
    assert.throws(
      () => lrAt(bad, paper),
      (e: unknown) => e instanceof ScheduleStepError && /step must be/.test(e.message),
    );
  }
});
