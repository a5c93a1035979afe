// What the caption–image score (caption-scores.ts) needs from a published bundle and its dataset: the
// bundle's reranker behind its own tokenizer, and held-out (caption, image) pairs of the dataset it was
// trained on.
import type { DatasetConfig, RunSpec } from '../config/index.ts';
import type { CaptionedImage, EvalReranker } from './caption-scores.ts';

/** The reranker of a published bundle, or undefined when the run trained none (rerank.steps = 0). */
export async function bundleReranker(
  bundle: Uint8Array,
): Promise<(EvalReranker & { spec: RunSpec; dispose(): void }) | undefined> {
  const { decodeState, expectArrays, initTfBackend, Reranker, rerankerDims, rerankerParamSpecs } =
    await import('../model/index.ts');
  const { decodeBundle } = await import('../store/bundle.ts');
  const { Tokenizer } = await import('../data/tokenizer.ts');
  await initTfBackend();
  const b = decodeBundle(bundle);
  if (!b.rerank) return undefined;
  const { spec } = b;
  const dims = rerankerDims(spec.rerank, spec.transformer, spec.dvae);
  const specs = rerankerParamSpecs(dims);
  const { arrays } = decodeState(b.rerank);
  expectArrays(
    arrays,
    specs.map((s) => [s.name, s.shape.reduce((x, y) => x * y, 1)] as const),
  );
  const model = Reranker.fromArrays(
    spec.rerank,
    dims,
    specs.map((s) => arrays.get(s.name)!),
  );
  const tokenizer = Tokenizer.fromJSON(b.tokenizer);
  const L = spec.transformer.textLen;
  return {
    spec,
    resolution: spec.dvae.resolution,
    similarities(captions, rgb, n) {
      const text = new Int32Array(captions.length * L);
      captions.forEach((c, i) => text.set(tokenizer.encode(c, L).ids, i * L));
      return model.similarities(text, captions.length, rgb, n);
    },
    dispose: () => model.dispose(),
  };
}

/** A dataset that yields no pairs to score. */
export class NoEvalPairsError extends Error {
  override name = 'NoEvalPairsError';
  constructor(readonly dataset: string) {
    super(`dataset ${dataset} has no items to score (neither a held-out nor a training split)`);
  }
}

/**
 * n (caption, image) pairs of the dataset a model was trained on: its held-out split, or its training split
 * when it has none (then `split` says so). Items are a seeded choice; images get the transformer's
 * preprocessing (centred crop, no flip) at the model's resolution; one caption per item.
 */
export async function heldoutPairs(
  dataset: DatasetConfig,
  resolution: number,
  n: number,
  seed: number,
): Promise<{ pairs: CaptionedImage[]; split: 'heldout' | 'train' }> {
  const { openDataset, preprocessTransformer } = await import('../data/index.ts');
  const { rngFor } = await import('../random/index.ts');
  let split: 'heldout' | 'train' = 'heldout';
  let ds = await openDataset(dataset, { split });
  if (ds.size === 0) {
    split = 'train';
    ds = await openDataset(dataset, { split });
  }
  if (ds.size === 0) throw new NoEvalPairsError(dataset.kind);
  const order = Array.from({ length: ds.size }, (_, i) => i);
  const rng = rngFor(seed, 'eval-score-pick');
  for (let i = order.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const pairs: CaptionedImage[] = [];
  for (const i of order.slice(0, n)) {
    const item = await ds.get(i, { seed, epoch: 0 });
    const rgb = preprocessTransformer(
      item.rgb,
      item.width,
      item.height,
      resolution,
      rngFor(seed, 'eval-score', i),
    );
    pairs.push({ caption: item.caption, rgb });
  }
  return { pairs, split };
}
