import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CurvesFormatError, RunCurves } from './run-curves.ts';
import { packSections } from './sections.ts';

test('run-curves: records steps, round-trips through its part, and cuts at a resume step', () => {
  const c = new RunCurves();
  c.record(1, { loss: 2.5, lr: 1e-3 });
  c.record(2, { loss: 2.25, lr: 1e-3, tau: 0.5 });
  c.record(3, { loss: 2, tau: 0.25 });
  assert.deepEqual(c.toJSON(), {
    steps: [1, 2, 3],
    series: { loss: [2.5, 2.25, 2], lr: [1e-3, 1e-3, NaN], tau: [NaN, 0.5, 0.25] },
  });
  // Stored as float32.
  const back = RunCurves.decode(c.encode());
  assert.deepEqual(back.toJSON(), {
    steps: [1, 2, 3],
    series: { loss: [2.5, 2.25, 2], lr: [1e-3, 1e-3, NaN].map(Math.fround), tau: [NaN, 0.5, 0.25] },
  });
  // A segment resuming from step 2 continues the curve from there.
  const resumed = RunCurves.decode(Buffer.from(c.encode()), 2);
  resumed.record(3, { loss: 1.5, lr: 1e-3 });
  assert.deepEqual(resumed.toJSON().steps, [1, 2, 3]);
  assert.deepEqual(resumed.toJSON().series.loss, [2.5, 2.25, 1.5]);
  assert.deepEqual(resumed.toJSON().series.tau, [NaN, 0.5, NaN]);
  // A checkpoint's own figures land on its step.
  resumed.annotate(3, 'sampleSeconds', 0.25);
  assert.deepEqual(resumed.toJSON().series.sampleSeconds, [NaN, NaN, 0.25]);
  assert.throws(() => resumed.annotate(2, 'sampleSeconds', 1), /not the newest/);
});

test('run-curves: a part whose columns disagree is an error naming the column', () => {
  const bad = packSections({
    step: new Uint8Array(Float32Array.of(1, 2).buffer),
    loss: new Uint8Array(Float32Array.of(1).buffer),
  });
  assert.throws(() => RunCurves.decode(bad), CurvesFormatError);
  assert.throws(() => RunCurves.decode(bad), /column 'loss' has 1 values for 2 steps/);
});
