import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  BatchOptionsError,
  EmptyDatasetError,
  loadBatch,
  rankSlice,
  type Batch,
  type LoadBatchOptions,
} from './batch.ts';
import type { Dataset } from './dataset.ts';
import { epochOrder, itemAt } from './order.ts';
import { ShapesDataset } from './shapes-dataset.ts';
import { flipHorizontal } from './preprocess.ts';
import { renderShape } from './shapes.ts';

const ds = new ShapesDataset({ kind: 'shapes', count: 20, canvas: 16, seed: 1234 });
const base: LoadBatchOptions = {
  seed: 3,
  step: 0,
  rank: 0,
  worldSize: 1,
  globalBatch: 8,
  resolution: 16,
  pipeline: 'dvae',
};

function concat(parts: Batch[]): { images: Buffer; captions: string[]; indices: number[] } {
  return {
    images: Buffer.concat(parts.map((p) => Buffer.from(p.images))),
    captions: parts.flatMap((p) => p.captions),
    indices: parts.flatMap((p) => p.indices),
  };
}

test("batch: the ranks' slices of a step concatenate to the W = 1 batch", async () => {
  for (const pipeline of ['dvae', 'transformer'] as const) {
    for (const step of [0, 2, 7]) {
      const whole = await loadBatch(ds, { ...base, pipeline, step });
      assert.equal(whole.n, 8);
      assert.equal(whole.images.length, 8 * 16 * 16 * 3);
      for (const W of [2, 3, 8]) {
        const parts = await Promise.all(
          Array.from({ length: W }, (_, rank) =>
            loadBatch(ds, { ...base, pipeline, step, rank, worldSize: W }),
          ),
        );
        assert.deepEqual(concat(parts), concat([whole]), `${pipeline} step ${step} W ${W}`);
        if (W === 3)
          assert.deepEqual(
            parts.map((p) => p.n),
            [2, 3, 3],
          );
      }
    }
  }
  assert.deepEqual(rankSlice(5, 1, 4, 32), { start: 168, end: 176 });
});

test('batch: each epoch is a permutation keyed by (seed, epoch)', () => {
  const n = 20;
  const seen: number[][] = [];
  for (let epoch = 0; epoch < 3; epoch++) {
    const items = Array.from({ length: n }, (_, k) => itemAt(3, epoch * n + k, n).index);
    assert.deepEqual(
      [...items].sort((a, b) => a - b),
      Array.from({ length: n }, (_, i) => i),
    );
    seen.push(items);
  }
  assert.notDeepEqual(seen[0], seen[1]);
  assert.deepEqual(Array.from(epochOrder(3, 1, n)), seen[1]);
  assert.notDeepEqual(Array.from(epochOrder(4, 1, n)), seen[1]);
});

test('batch: a run resumed at step k sees exactly the batches of the uninterrupted run', async () => {
  // 20 items, batches of 8: steps 2 and 4 straddle an epoch boundary.
  const straight: Batch[] = [];
  for (let step = 0; step < 6; step++)
    straight.push(await loadBatch(ds, { ...base, step, rank: step % 2, worldSize: 2 }));
  // A fresh dataset object and a different order of calls, as after a restart on another machine.
  const again = new ShapesDataset({ kind: 'shapes', count: 20, canvas: 16, seed: 1234 });
  for (let step = 5; step >= 2; step--) {
    const b = await loadBatch(again, { ...base, step, rank: step % 2, worldSize: 2 });
    assert.deepEqual(b, straight[step], `step ${step}`);
  }
  // Over 5 steps × 8 = 40 samples = 2 epochs, every item appears exactly twice.
  const all = await Promise.all([0, 1, 2, 3, 4].map((step) => loadBatch(ds, { ...base, step })));
  const counts = new Array(20).fill(0);
  for (const b of all) for (const i of b.indices) counts[i]++;
  assert.deepEqual(counts, new Array(20).fill(2));
});

test("batch: captions are drawn from the item's captions per (seed, epoch); images are the preprocessed items", async () => {
  const captionsSeen = new Map<number, Set<string>>();
  for (let step = 0; step < 15; step++) {
    const b = await loadBatch(ds, { ...base, step, pipeline: step % 2 ? 'dvae' : 'transformer' });
    for (let j = 0; j < b.n; j++) {
      const idx = b.indices[j];
      assert.ok((await ds.captions(idx)).includes(b.captions[j]));
      if (!captionsSeen.has(idx)) captionsSeen.set(idx, new Set());
      captionsSeen.get(idx)!.add(b.captions[j]);
      // At res = canvas: transformer gives the render itself, dVAE the render or its mirror.
      const img = Buffer.from(b.images.subarray(j * 768, (j + 1) * 768));
      const raw = renderShape(ds.spec(idx), 16);
      const ok =
        img.equals(Buffer.from(raw)) ||
        (step % 2 === 1 && img.equals(Buffer.from(flipHorizontal(raw, 16, 16))));
      assert.ok(ok, `step ${step} sample ${j}`);
    }
  }
  assert.ok(
    [...captionsSeen.values()].some((s) => s.size > 1),
    'an item yields different captions across epochs',
  );
});

test('batch: bad options and empty datasets are named', async () => {
  const bad = (o: Partial<LoadBatchOptions>, field: string): Promise<void> =>
    assert.rejects(
      loadBatch(ds, { ...base, ...o }),
      (e: unknown) => e instanceof BatchOptionsError && e.field === field,
    );
  await bad({ rank: 2, worldSize: 2 }, 'rank');
  await bad({ globalBatch: 2, worldSize: 4, rank: 0 }, 'globalBatch');
  await bad({ step: -1 }, 'step');
  await bad({ step: 1.5 }, 'step');
  await bad({ pipeline: 'clip' as never }, 'pipeline');
  await bad({ resolution: 0 }, 'resolution');
  const empty: Dataset = {
    kind: 'folder',
    split: 'train',
    size: 0,
    skipped: { 'empty-caption': 3 },
    get: () => Promise.reject(new Error()),
    captions: async () => [],
    key: () => '',
  };
  await assert.rejects(loadBatch(empty, base), EmptyDatasetError);
});
