// One rank's share of a step's gradient, for any world size W ≤ B (the global batch).
//
// Rank r's slice of the global batch has n_r = ⌊(r+1)B/W⌋ − ⌊rB/W⌋ samples (data/batch.ts); the trainer
// returns gradients of a local-batch MEAN loss. Weighting each pass of n_j samples by w_j = n_j·W/B makes
// the mean over ranks (what the all-reduce computes) Σ_j n_j/B · mean_j = the global-batch mean, whether
// the slices are equal or not, and whether a slice goes through in one pass or in micro-batches of at most
// `train.microBatch` samples. So a world-size change alters neither the update nor the loss curve, only
// the order of float additions. With equal slices in one pass every weight is exactly 1 and the trainer's
// arrays are passed through untouched (bit-identical to a run that never weighs).
//
// A trainer whose loss couples samples of different ranks (`exchange`: the reranker's contrastive loss,
// where every pair of the global batch is a negative) is the exception: its slice goes through in one pass
// (a micro-batch would see only part of the negatives), after an all-gather of every rank's contribution,
// and its gradient is already the rank's share of the global loss's, so it is not weighted.
import type { Group } from '../collective/index.ts';
import type { RunSpec } from '../config/index.ts';
import { stageBatchSize } from '../contract/index.ts';
import { rankSlice } from '../data/index.ts';
import type { GradientResult, StepMetrics, Trainer } from '../model/index.ts';
import type { StageBatch, StageBatchSource } from './batches.ts';

/** The passes a rank's slice goes through: [from, to) within the slice, at most `microBatch` each. */
export function microBatches(n: number, microBatch: number): { from: number; to: number }[] {
  const size = microBatch > 0 ? microBatch : n;
  const out: { from: number; to: number }[] = [];
  for (let from = 0; from < n; from += size) out.push({ from, to: Math.min(n, from + size) });
  return out;
}

/** Every rank's `mine`, in rank order, where rank j's has `sizes[j]` values: an all-reduce of a buffer in
 *  which each rank fills only its own range. Exact: every other range adds zeros. */
async function allGather(
  group: Group,
  mine: Float32Array,
  step: number,
  rank: number,
  sizes: number[],
): Promise<Float32Array[]> {
  const offsets = sizes.map((_, j) => sizes.slice(0, j).reduce((a, b) => a + b, 0));
  const v = new Float32Array(sizes.reduce((a, b) => a + b, 0));
  v.set(mine, offsets[rank]!);
  const sum = await group.allReduce(v, step, 'gather');
  return sizes.map((n, j) => sum.slice(offsets[j]!, offsets[j]! + n));
}

/** One pass of an `exchange` trainer over this rank's whole slice, after gathering every rank's part. */
async function exchangeGradients(
  trainer: Trainer<StageBatch>,
  batch: StageBatch,
  group: Group | undefined,
  B: number,
  step: number,
  rank: number,
  worldSize: number,
): Promise<GradientResult> {
  const mine = trainer.exchange!(batch, step, rank);
  if (worldSize === 1) return trainer.computeGradients(batch, step, rank, [mine]);
  if (!group) throw new Error(`the ${trainer.stage} trainer gathers its peers' batch: it needs the group`);
  const width = mine.length / batch.n;
  const sizes = Array.from({ length: worldSize }, (_, j) => {
    const { start, end } = rankSlice(step, j, worldSize, B);
    return (end - start) * width;
  });
  return trainer.computeGradients(batch, step, rank, await allGather(group, mine, step, rank, sizes));
}

/** The gradient and loss of rank `rank` of `worldSize` at `step`, weighted so that their mean over ranks is
 *  the global-batch gradient and loss. Metrics are the sample-weighted mean over passes. `group` (the
 *  world's) is needed by trainers that `exchange`. */
export async function rankGradients(
  trainer: Trainer<StageBatch>,
  source: StageBatchSource,
  spec: RunSpec,
  step: number,
  rank: number,
  worldSize: number,
  group?: Group,
): Promise<GradientResult> {
  const B = stageBatchSize(spec, trainer.stage);
  const { start, end } = rankSlice(step, rank, worldSize, B);
  const batch = await source.batch(step, rank, worldSize);
  if (trainer.exchange) return exchangeGradients(trainer, batch, group, B, step, rank, worldSize);
  const passes = microBatches(end - start, spec.train.microBatch);
  if (passes.length === 1 && (end - start) * worldSize === B)
    return trainer.computeGradients(batch, step, rank);

  let grads: Float32Array[] | undefined;
  let loss = 0;
  const metrics: StepMetrics = {};
  for (const { from, to } of passes) {
    const g = trainer.computeGradients(source.slice(batch, from, to), step, rank);
    const w = ((to - from) * worldSize) / B;
    grads ??= g.grads.map((a) => new Float32Array(a.length));
    grads.forEach((acc, i) => {
      const a = g.grads[i]!;
      for (let k = 0; k < acc.length; k++) acc[k]! += w * a[k]!;
    });
    loss += w * g.loss;
    const share = (to - from) / (end - start);
    for (const [k, v] of Object.entries(g.metrics)) metrics[k] = (metrics[k] ?? 0) + share * v;
  }
  return { loss, grads: grads!, metrics };
}
