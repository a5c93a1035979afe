// checkpoint samples: grids drawn from a trainer's EMA weights leave the trainer's state untouched, repeat
// byte for byte, and have one labelled row per prompt (or originals above reconstructions).
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { resolveSpec } from '../config/index.ts';
import { openStores } from '../store/index.ts';
import { RECONSTRUCTIONS, renderCheckpointSamples } from './checkpoint-samples.ts';
import { prepareTokenizer } from './encode-dataset.ts';
import { DATA_STAGE, DATA_STEP } from './encoded.ts';
import { createStageTrainer } from './stage-trainer.ts';

process.env.DALLE_BACKEND = 'wasm';
const spec = resolveSpec({ preset: 'tiny' });
const side = spec.dvae.resolution * 3; // zoom 3
const gap = 6;

async function size(png: Uint8Array): Promise<[number, number]> {
  const m = await sharp(png).metadata();
  return [m.width!, m.height!];
}

test('checkpoint samples: a dVAE grid of held-out images over their reconstructions', async () => {
  const { checkpoints } = await openStores({ dir: mkdtempSync(join(tmpdir(), 'samples-')) });
  const trainer = await createStageTrainer('dvae', spec, 1);
  try {
    const before = trainer.saveState();
    const ctx = {
      runId: 'r1',
      stage: 'dvae' as const,
      spec,
      ema: () => trainer.exportParams('ema'),
      checkpoints,
    };
    const a = (await renderCheckpointSamples(ctx))!;
    assert.deepEqual(trainer.saveState(), before, 'drawing changed the trainer state');
    assert.deepEqual(a.meta.rows, ['held-out images', 'reconstructions']);
    assert.equal(a.meta.images, RECONSTRUCTIONS);
    assert.equal((await size(a.png))[1], 2 * (side + gap) + gap);
    assert.deepEqual((await renderCheckpointSamples(ctx))!.png, a.png, 'same weights, same grid');
    const none = { ...spec, train: { ...spec.train, sampleImages: 0 } };
    assert.equal(await renderCheckpointSamples({ ...ctx, spec: none }), undefined);
  } finally {
    trainer.dispose();
  }
});

test('checkpoint samples: a transformer grid has one row per prompt, decoded by the run dVAE', async () => {
  const { checkpoints } = await openStores({ dir: mkdtempSync(join(tmpdir(), 'samples-')) });
  const runId = `r2-${process.pid}`;
  // What a run has by its first transformer checkpoint: a committed dVAE and the tokenizer.
  const dvae = await createStageTrainer('dvae', spec, 1);
  const params = await checkpoints.putPart(runId, 'dvae', 20, 'params', dvae.saveState());
  dvae.dispose();
  await checkpoints.commit({ runId, stage: 'dvae', step: 20, parts: [params] });
  const tok = await prepareTokenizer(checkpoints, { runId, spec });
  await checkpoints.commit({
    runId,
    stage: DATA_STAGE,
    step: DATA_STEP,
    parts: [tok],
    meta: { shards: 0, size: 0, tokensPerImage: spec.dvae.grid ** 2 },
  });

  const trainer = await createStageTrainer('transformer', spec, 1);
  try {
    const before = trainer.saveState();
    const ctx = {
      runId,
      stage: 'transformer' as const,
      spec,
      ema: () => trainer.exportParams('ema'),
      checkpoints,
    };
    const a = (await renderCheckpointSamples(ctx))!;
    assert.deepEqual(trainer.saveState(), before, 'drawing changed the trainer state');
    assert.deepEqual(a.meta.rows, [
      'a large red circle at the center',
      'a large blue circle at the center (held-out)',
    ]);
    const n = spec.train.sampleImages;
    assert.equal(a.meta.kind, 'generated');
    assert.equal(a.meta.images, n);
    const [w, h] = await size(a.png);
    assert.equal(h, 2 * (side + gap) + gap);
    assert.ok(w > n * (side + gap), `grid ${w} px wide holds ${n} images`);
    assert.deepEqual((await renderCheckpointSamples(ctx))!.png, a.png, 'fixed sampling seed');
  } finally {
    trainer.dispose();
  }
});
