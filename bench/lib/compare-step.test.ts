// `bench compare --kernels`: the profile counts every TensorFlow kernel of the timed steps and hands the
// backend its own binding back afterwards (native backend only; skipped, saying why, without it). Ranks:
// two single-thread ranks of one step, in this process, over the suite's nats-server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadSpec } from '../../config/index.ts';
import { PACKAGE_ROOT } from '../../config/package-root.ts';
import { initTfBackend } from '../../model/index.ts';
import { timeStep, type StepJob } from './compare-step.ts';
import { serviceEnv } from '../../infra/services.ts';
import { stagePowerSgd } from '../../contract/index.ts';

const backend = await initTfBackend().catch(() => 'none');
const skip = backend === 'tensorflow' ? false : `needs the native backend (this process got ${backend})`;

const spec = loadSpec('tiny');
/** A few steps of the tiny preset's `model`, batch 4. */
const tinyJob = (model: StepJob['model'], steps: number): StepJob => ({
  model,
  root: PACKAGE_ROOT,
  dvae: spec.dvae,
  transformer: spec.transformer,
  trainFlopsPerItem: 1,
  batch: 4,
  warmup: 1,
  steps,
});

test(
  'bench compare --kernels: every kernel of the timed steps, then the binding restored',
  { skip },
  async () => {
    const binding = (tf.backend() as unknown as { binding: unknown }).binding;
    const job: StepJob = { ...tinyJob('dvae', 2), kernels: true };
    const r = await timeStep(job);
    const k = r.kernels!;
    assert.ok(k, 'no kernel profile');
    const names = new Set(k.perKernel.map((q) => q.name));
    for (const name of ['Conv2DBackpropFilter', 'ReluGrad', '(download)']) assert.ok(names.has(name), name);
    for (let i = 1; i < k.perKernel.length; i++) {
      assert.ok(k.perKernel[i - 1]!.msPerStep >= k.perKernel[i]!.msPerStep, 'sorted by time');
    }
    // Kernels are a part of the step: never more than it took.
    const stepMs = (r.stepSec.reduce((a, b) => a + b, 0) * 1000) / job.steps;
    assert.ok(k.kernelMsPerStep > 0 && k.kernelMsPerStep <= stepMs, `${k.kernelMsPerStep} of ${stepMs} ms`);
    assert.ok(Math.abs(k.kernelMsPerStep + k.outsideMsPerStep - stepMs) < 1e-6);
    assert.equal((tf.backend() as unknown as { binding: unknown }).binding, binding);
    // Without the flag, no profile and no stand-in binding.
    const plain = await timeStep({ ...job, kernels: false });
    assert.equal(plain.kernels, undefined);
  },
);

test('bench compare, T single-thread ranks: each steps on its share of the batch through a real all-reduce', async () => {
  const runId = `compare-test-${process.pid}-${Date.now()}`;
  const job = (rank: number): StepJob => ({
    ...tinyJob('transformer', 3),
    ranks: {
      url: serviceEnv().natsUrl,
      runId,
      rank,
      worldSize: 2,
      powersgd: stagePowerSgd(spec, 'transformer'),
    },
  });
  const [r0, r1] = await Promise.all([timeStep(job(0)), timeStep(job(1))]);
  for (const [r, rank] of [
    [r0!, 0],
    [r1!, 1],
  ] as const) {
    assert.equal(r.stepSec.length, 3);
    assert.equal(r.detail.rank, rank);
    assert.equal(r.detail.worldSize, 2);
    assert.ok(Number(r.detail.exposedCommMs) >= 0, `exposed ${String(r.detail.exposedCommMs)}`);
  }
  // A batch that does not split over the ranks is refused, naming both.
  await assert.rejects(timeStep({ ...job(0), batch: 5 }), /batch 5 does not split over 2 ranks/);
});
