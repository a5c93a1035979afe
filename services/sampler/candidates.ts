// The paper's reranking, at serving time: every image a request returns is the best of `candidates`
// samples by the model's reranker (model/reranker.ts, a contrastive text–image model that reads pixels).
// Sample k of a request is image ⌊k / candidates⌋, candidate k mod candidates, with seed (seed + k).
import type { SamplingModel } from './engine.ts';
import type { SampledImage } from './scheduler.ts';

/** A returned image: the candidate kept, and the reranker's score of it (absent without a reranker). */
export interface KeptImage {
  /** Image index within the request (0..num_images − 1). */
  index: number;
  /** Which candidate was kept, and its sample index k (its seed is the request's seed + k). */
  candidate: number;
  sample: number;
  image: SampledImage;
  rerankScore: number | undefined;
}

/**
 * Scores all `images` (every candidate of every image, in sample order) against the caption's ids with the
 * model's reranker and keeps the highest-scoring candidate of each image (ties: the lower candidate). A
 * model without a reranker may only be asked for one candidate; its images are kept unscored.
 */
export function keepBest(
  model: SamplingModel,
  text: Int32Array,
  images: SampledImage[],
  candidates: number,
): { kept: KeptImage[]; ms: number } {
  const t0 = performance.now();
  const n = images.length / candidates;
  if (!Number.isInteger(n))
    throw new RangeError(`${images.length} samples for ${candidates} candidates each`);
  let scores: Float32Array | undefined;
  if (model.facts.reranker) {
    const px = images[0]!.rgb.length;
    const rgb = new Uint8Array(images.length * px);
    images.forEach((img, k) => rgb.set(img.rgb, k * px));
    scores = model.rerank(text, rgb, images.length);
  } else if (candidates > 1) {
    throw new RangeError(`${candidates} candidates need a reranker; ${model.facts.name} has none`);
  }
  const kept = Array.from({ length: n }, (_, index): KeptImage => {
    let best = 0;
    if (scores)
      for (let c = 1; c < candidates; c++)
        if (scores[index * candidates + c]! > scores[index * candidates + best]!) best = c;
    const sample = index * candidates + best;
    return { index, candidate: best, sample, image: images[sample]!, rerankScore: scores?.[sample] };
  });
  return { kept, ms: performance.now() - t0 };
}
