// train: an elastic run (train.elastic {min 1, max 3}) on real worker processes adopts an idle worker
// (W 2 → 3 at a checkpoint), shrinks when a worker dies and no replacement comes (3 → 2 after joinTimeout),
// and follows a setWorldSize signal at the next checkpoint (2 → 1). The global batch stays 8 throughout
// (slices of 3, 3, 2 at W = 3), the data and the Gumbel noise of every sample are those of a fixed-W run,
// and the PowerSGD error buffers are re-sharded; so its loss curve is the fixed W = 2 run's, step by step,
// within LOSS_TOLERANCE (float summation order is all that differs).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from 'nats';
import { serviceEnv } from '../infra/services.ts';
import { openStores, type CheckpointStore } from '../store/index.ts';
import { setWorldSizeSignal, type TrainDalleWorkflow } from '../contract/index.ts';
import {
  dalle,
  progress,
  startWorker,
  temporal,
  waitFor,
  writeSpec,
  type WorkerProc,
} from './fixtures/cluster.ts';

/** Largest relative difference allowed between the two runs' global loss at any step. */
const LOSS_TOLERANCE = 1e-4;
const STEPS = 20;
const EVERY = 5;

interface Curve {
  losses: number[];
  worldSizes: number[];
}

/** The loss of every step and the world size of every checkpoint, from the committed manifests. */
async function curve(ck: CheckpointStore, runId: string, stage: string): Promise<Curve> {
  const out: Curve = { losses: [], worldSizes: [] };
  for (let step = EVERY; step <= STEPS; step += EVERY) {
    const m = await ck.manifestAt(runId, stage, step);
    assert.ok(m, `${runId}/${stage} has checkpoint ${step}`);
    const losses = m.meta.losses as number[];
    assert.equal(
      losses.length,
      EVERY,
      `${runId}/${stage}@${step} records the loss of each step since the last`,
    );
    out.losses.push(...losses);
    out.worldSizes.push(m.meta.worldSize as number);
  }
  return out;
}

function worstRelative(a: number[], b: number[]): number {
  return Math.max(...a.map((x, i) => Math.abs(x - b[i]!) / Math.abs(x)));
}

test(
  'train: elastic world size 2 → 3 → 2 → 1 keeps the loss curve of a fixed W = 2 run',
  { timeout: 20 * 60_000 },
  async (t) => {
    const base = {
      preset: 'tiny',
      dvae: { steps: STEPS },
      transformer: { steps: STEPS },
      train: { keepCheckpoints: 10, joinTimeout: 12, collectiveTimeout: 6, heartbeatTimeout: 15 },
    };
    const nc = await connect({ servers: serviceEnv().natsUrl });
    const { checkpoints } = await openStores({ nc });
    const { client, close } = await temporal();
    const workers: WorkerProc[] = [startWorker({}, 'w0'), startWorker({}, 'w1')];
    const tag = `${process.pid}-${Date.now()}`;
    try {
      // 1. The reference: W = 2 throughout.
      const fixed = `fixed-${tag}`;
      assert.equal(dalle(['train', '--config', writeSpec(base), '--run-id', fixed, '--detach']).code, 0);
      await client.workflow.getHandle<TrainDalleWorkflow>(fixed).result();

      // 2. Elastic: a third worker is idle from the start and dies at dVAE step 12 (mid-segment, W = 3).
      workers.push(startWorker({ DALLE_TEST_SIGKILL_AT: 'dvae:12' }, 'w2'));
      await waitFor('w2 to poll', async () => workers[2]!.output.some((l) => l.includes('polling')), 120_000);
      const run = `elastic-${tag}`;
      const spec = { ...base, train: { ...base.train, elastic: { min: 1, max: 3 } } };
      assert.equal(dalle(['train', '--config', writeSpec(spec), '--run-id', run, '--detach']).code, 0);
      // 3. Once the transformer's first segment runs, ask for one rank: it takes effect at a checkpoint.
      await waitFor(
        'the transformer stage to train',
        async () => {
          const p = await progress(client, run, checkpoints);
          return p?.stage === 'transformer' && p.step >= 1;
        },
        10 * 60_000,
        100,
      );
      await client.workflow.getHandle(run).signal(setWorldSizeSignal, 1);
      await client.workflow.getHandle<TrainDalleWorkflow>(run).result();
      assert.equal(workers[2]!.proc.signalCode, 'SIGKILL', 'w2 died at dVAE step 12');

      const ref = {
        dvae: await curve(checkpoints, fixed, 'dvae'),
        transformer: await curve(checkpoints, fixed, 'transformer'),
      };
      const got = {
        dvae: await curve(checkpoints, run, 'dvae'),
        transformer: await curve(checkpoints, run, 'transformer'),
      };
      const dvaeDiff = worstRelative(ref.dvae.losses, got.dvae.losses);
      const transformerDiff = worstRelative(ref.transformer.losses, got.transformer.losses);
      t.diagnostic(
        `worst relative loss difference: dvae ${dvaeDiff.toExponential(2)}, transformer ${transformerDiff.toExponential(2)}`,
      );
      t.diagnostic(`dvae losses fixed ${ref.dvae.losses.map((x) => x.toFixed(5)).join(' ')}`);
      t.diagnostic(`dvae losses elastic ${got.dvae.losses.map((x) => x.toFixed(5)).join(' ')}`);
      assert.deepEqual(ref.dvae.worldSizes, [2, 2, 2, 2]);
      assert.deepEqual(
        got.dvae.worldSizes,
        [2, 3, 2, 2],
        'adopted w2 at checkpoint 5, lost it after step 10',
      );
      assert.equal(got.transformer.worldSizes[0], 2);
      assert.ok(got.transformer.worldSizes.slice(1).includes(1), `transformer ${got.transformer.worldSizes}`);
      const events = (await progress(client, run, checkpoints))!.events;
      for (const e of [
        'dvae: world size 2 → 3 at checkpoint 5',
        'dvae: world size 3 → 2 (elastic',
        'transformer: world size 2 → 1',
      ])
        assert.ok(
          events.some((x) => x.startsWith(e)),
          `event "${e}" in:\n${events.join('\n')}`,
        );
      assert.ok(workers.some((w) => w.output.some((l) => l.includes('PowerSGD error buffers re-sharded'))));

      assert.ok(dvaeDiff <= LOSS_TOLERANCE, `dVAE loss curves differ by ${dvaeDiff}`);
      assert.ok(transformerDiff <= LOSS_TOLERANCE, `transformer loss curves differ by ${transformerDiff}`);
    } catch (e) {
      for (const w of workers) t.diagnostic(w.output.slice(-30).join('\n'));
      throw e;
    } finally {
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      await close();
      await nc.close();
    }
  },
);
