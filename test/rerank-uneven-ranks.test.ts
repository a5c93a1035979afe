// rerank: the contrastive loss over a world whose ranks hold unequal slices of the global batch (W = 3 of
// B = 8, as an elastic run may pick), over a real nats-server. Every pair of the global batch is a negative
// of every other, so the ranks all-gather their pair embeddings (each its own length) before their
// gradients, and the mean of their gradients must be the single-rank gradient of the whole batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveSpec } from '../config/index.ts';
import { rankSlice } from '../data/index.ts';
import { createRerankTrainer, initTfBackend, type RerankBatch } from '../model/index.ts';
import type { StageBatch, StageBatchSource } from '../activities/batches.ts';
import { rankGradients } from '../activities/rank-gradients.ts';
import { openRanks } from './collective-helpers.ts';

const spec = resolveSpec({ preset: 'tiny', train: { worldSize: 1 } });
const B = spec.rerank.batchSize ?? spec.train.batchSize;
const R = spec.dvae.resolution;
const L = spec.transformer.textLen;

/** B fixed pairs: pair i's image and caption are functions of i, so every slice is a view of one batch. */
const images = Uint8Array.from({ length: B * R * R * 3 }, (_, k) => (k * 37 + 11) % 256);
const text = Int32Array.from({ length: B * L }, (_, k) =>
  k % L < 3 ? 1 + ((Math.floor(k / L) * 5 + k) % (spec.transformer.vocabSize - 1)) : 0,
);
const source: StageBatchSource = {
  async batch(step, rank, worldSize) {
    const { start, end } = rankSlice(step, rank, worldSize, B);
    const [from, to] = [start - step * B, end - step * B];
    const b: RerankBatch = {
      images: images.subarray(from * R * R * 3, to * R * R * 3),
      text: text.subarray(from * L, to * L),
      n: to - from,
    };
    return b;
  },
  slice: (b: StageBatch) => b,
};

test('rerank: ranks with unequal slices gather their pairs; their mean gradient is the whole batch’s', async () => {
  await initTfBackend();
  const whole = createRerankTrainer(spec.rerank, spec.transformer, spec.dvae, spec.train.seed, 1);
  const one = await rankGradients(whole, source, spec, 0, 0, 1);
  whole.dispose();

  const W = 3;
  assert.notEqual(B % W, 0, 'the slices must be unequal for this test to mean anything');
  const ranks = await openRanks(W);
  try {
    const trainers = Array.from({ length: W }, () =>
      createRerankTrainer(spec.rerank, spec.transformer, spec.dvae, spec.train.seed, W),
    );
    const all = await Promise.all(
      trainers.map((t, r) => rankGradients(t, source, spec, 0, r, W, ranks.groups[r])),
    );
    for (const t of trainers) t.dispose();
    for (const g of all) assert.ok(Math.abs(g.loss - one.loss) < 1e-5, `loss ${g.loss} vs ${one.loss}`);
    let worst = 0;
    one.grads.forEach((ref, i) =>
      ref.forEach((v, k) => {
        const mean = all.reduce((s, g) => s + g.grads[i]![k]!, 0) / W;
        worst = Math.max(worst, Math.abs(mean - v) / (Math.abs(v) + 1e-4));
      }),
    );
    assert.ok(worst < 1e-3, `largest relative difference ${worst}`);
  } finally {
    await ranks.close();
  }
});
