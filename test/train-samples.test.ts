// train: every checkpoint of a tiny run stores its curves and a sample grid (reconstructions for the dVAE,
// prompts for the transformer), grids outlive pruning and `dalle status --json` lists them; a run with
// samples off trains to bit-identical parameters.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from 'nats';
import sharp from 'sharp';
import { serviceEnv } from '../infra/services.ts';
import { openStores, RunCurves, type CheckpointManifest } from '../store/index.ts';
import { dalle, startWorker, temporal, writeSpec } from './fixtures/cluster.ts';

test('train: curves and sample grids at every checkpoint; samples off trains bit-identically', async (t) => {
  // W = 1 so that both runs train side by side on the two workers.
  const base = { preset: 'tiny', train: { worldSize: 1 } };
  const withSamples = writeSpec(base);
  const without = writeSpec({ ...base, train: { ...base.train, sampleImages: 0 } });
  const tag = `${process.pid}-${Date.now()}`;
  const [on, off] = [`samples-on-${tag}`, `samples-off-${tag}`];
  const nc = await connect({ servers: serviceEnv().natsUrl });
  const { checkpoints } = await openStores({ nc });
  const { client, close } = await temporal();
  const workers = [startWorker({}, 'w0'), startWorker({}, 'w1')];
  try {
    assert.equal(dalle(['train', '--config', withSamples, '--run-id', on, '--detach']).code, 0);
    assert.equal(dalle(['train', '--config', without, '--run-id', off, '--detach']).code, 0);
    await Promise.all([on, off].map((id) => client.workflow.getHandle(id).result()));

    for (const stage of ['dvae', 'transformer']) {
      const a = (await checkpoints.latest(on, stage))!;
      const b = (await checkpoints.latest(off, stage))!;
      const sha = (m: CheckpointManifest, part: string) => m.parts.find((p) => p.name === part)?.sha256;
      assert.equal(sha(a, 'params'), sha(b, 'params'), `${stage}: samples changed the training`);
      assert.ok(sha(a, 'samples') && !sha(b, 'samples'), `${stage}: a grid only where asked for`);
      assert.equal(
        (a.meta.samples as { kind: string }).kind,
        stage === 'dvae' ? 'reconstructions' : 'generated',
      );
      t.diagnostic(`${stage}: grid drawn in ${(a.meta.samples as { ms: number }).ms} ms`);

      // Grids of pruned checkpoints stay (keepCheckpoints 3 of 4 checkpoints).
      const grids = await checkpoints.partsNamed(on, stage, 'samples');
      assert.deepEqual(
        grids.map((g) => g.step),
        [5, 10, 15, 20],
      );
      const png = (await checkpoints.backend.getObject(grids[0]!.key))!;
      assert.equal((await sharp(png).metadata()).format, 'png');

      // The curves hold every step from 1, whichever checkpoint is read.
      const curves = RunCurves.decode(await checkpoints.loadPart(a, 'curves')).toJSON();
      assert.deepEqual(
        curves.steps,
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
      assert.ok(curves.series.loss!.every(Number.isFinite));
      assert.ok(curves.series.lr!.every((v) => v > 0));
      assert.ok(stage === 'dvae' ? curves.series.tau && curves.series.beta : curves.series.imageLoss);
      // Each grid's drawing time sits on its checkpoint's step.
      const drawn = curves.steps.filter((_, i) => Number.isFinite(curves.series.sampleSeconds![i]));
      assert.deepEqual(drawn, [5, 10, 15, 20]);
      const offCurves = RunCurves.decode(await checkpoints.loadPart(b, 'curves')).toJSON();
      assert.equal(offCurves.series.sampleSeconds, undefined, 'no grids, no drawing time');
    }

    const status = JSON.parse(dalle(['status', on, '--json']).out) as {
      samples: { stage: string; step: number; key: string }[];
    };
    assert.deepEqual(
      status.samples.map((s) => `${s.stage}:${s.step}`),
      [
        'dvae:5',
        'dvae:10',
        'dvae:15',
        'dvae:20',
        'transformer:5',
        'transformer:10',
        'transformer:15',
        'transformer:20',
      ],
    );
  } catch (e) {
    for (const w of workers) t.diagnostic(w.output.slice(-40).join('\n'));
    throw e;
  } finally {
    await Promise.all(workers.map((w) => w.kill('SIGTERM')));
    await close();
    await nc.close();
  }
});
