// The synthetic shapes set (kind e) as the presets configure it, through openDataset and loadBatch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadSpec } from '../config/index.ts';
import { sceneCaptions } from '../data/shapes-scenes.ts';
import {
  HELD_OUT_COMPOSITIONS,
  isHeldOut,
  loadBatch,
  openDataset,
  parseShapesCaption,
  ShapesDataset,
  trainTokenizer,
} from '../data/index.ts';

test('data: shapes presets open a train split without held-out pairs and a held-out split of 108', async () => {
  for (const preset of ['tiny', 'shapes'] as const) {
    const spec = loadSpec(preset);
    const train = await openDataset(spec.dataset);
    const held = await openDataset(spec.dataset, { split: 'heldout' });
    assert.ok(train instanceof ShapesDataset && held instanceof ShapesDataset);
    assert.equal(train.size, spec.dataset.kind === 'shapes' ? spec.dataset.count : -1);
    assert.equal(held.size, HELD_OUT_COMPOSITIONS.length);
    for (let i = 0; i < train.size; i += 7) {
      const item = await train.get(i, { seed: 1, epoch: 0 });
      assert.equal(item.width, spec.dvae.resolution);
      // The scene may show the extra kinds `shapes` trains on (diamond, cross, ring), never a held-out pair.
      const scene = train.scene(i);
      assert.ok(
        scene.every((s) => !isHeldOut(s)),
        `item ${i} shows a held-out pair`,
      );
      assert.ok(sceneCaptions(scene).includes(item.caption), 'the caption describes the image');
      const parsed = parseShapesCaption(item.caption);
      if (parsed) assert.equal(isHeldOut(parsed), false);
    }
    if (spec.dataset.kind === 'shapes' && spec.dataset.extraShapes > 0) {
      const kinds = new Set(Array.from({ length: 216 }, (_, i) => train.spec(i).shape));
      assert.ok(kinds.has('diamond'), `extraShapes ${spec.dataset.extraShapes}: kinds drawn ${[...kinds]}`);
    }
    for (let i = 0; i < held.size; i++)
      assert.equal(isHeldOut(parseShapesCaption((await held.get(i)).caption)!), true);
  }
});

test('data: tiny preset batches for 2 ranks and tokenizes with its own tokenizer', async () => {
  const spec = loadSpec('tiny');
  const ds = await openDataset(spec.dataset);
  const tok = await trainTokenizer(ds, spec.transformer.vocabSize);
  const { worldSize, batchSize, seed } = spec.train;
  for (let step = 0; step < 3; step++) {
    for (let rank = 0; rank < worldSize; rank++) {
      const b = await loadBatch(ds, {
        seed,
        step,
        rank,
        worldSize,
        globalBatch: batchSize,
        resolution: spec.dvae.resolution,
        pipeline: 'dvae',
      });
      assert.equal(b.n, batchSize / worldSize);
      assert.equal(b.images.length, b.n * spec.dvae.resolution ** 2 * 3);
      for (const c of b.captions) {
        const e = tok.encode(c, spec.transformer.textLen);
        assert.equal(e.ids.length, spec.transformer.textLen);
        assert.equal(e.length, Math.min(e.fullLength, spec.transformer.textLen));
      }
    }
  }
});
