// The batch of (step, rank, W) for each stage. Both are pure functions of the run spec and the step (the
// data cursor), so a relaunched segment sees exactly the batches the lost one saw.
import type { RunSpec } from '../config/index.ts';
import { loadBatch, rankSlice, type Batch, type Dataset, type Tokenizer } from '../data/index.ts';
import { mixSeed, rngFor } from '../random/index.ts';
import type { DvaeBatch, RerankBatch, TransformerBatch } from '../model/index.ts';
import type { CheckpointStore } from '../store/index.ts';
import { dataset } from './datasets.ts';
import { encodedData, type EncodedData } from './encoded.ts';
import { stageBatchSize, type StageName } from '../contract/index.ts';

export interface StageBatchSource {
  batch(step: number, rank: number, worldSize: number): Promise<StageBatch>;
  /** Samples [from, to) of a batch this source made (a micro-batch), as a batch of the same kind. */
  slice(batch: StageBatch, from: number, to: number): StageBatch;
}

export type StageBatch = DvaeBatch | TransformerBatch | RerankBatch;

/** The caption ids the transformer trains on for the sample at stream position `position`: BPE with
 *  dropout, or, with probability transformer.captionDropout, the empty caption (all padding) that
 *  classifier-free guidance needs. Keyed by (seed, position) like every other draw: a resumed run, or one
 *  with another world size, drops the same captions. */
export function transformerCaption(
  tokenizer: Pick<Tokenizer, 'encode'>,
  caption: string,
  position: number,
  spec: RunSpec,
): Int32Array {
  const { textLen, bpeDropout, captionDropout } = spec.transformer;
  const seed = spec.train.seed;
  if (captionDropout > 0 && rngFor(seed, 'caption-dropout', position).next() < captionDropout)
    return new Int32Array(textLen);
  return tokenizer.encode(caption, textLen, { dropout: bpeDropout, seed: mixSeed(seed, 'bpe', position) })
    .ids;
}

export async function stageBatches(
  stage: StageName,
  spec: RunSpec,
  checkpoints: CheckpointStore,
  runId: string,
): Promise<StageBatchSource> {
  const ds = await dataset(spec.dataset);
  const common = {
    seed: spec.train.seed,
    globalBatch: stageBatchSize(spec, stage),
    resolution: spec.dvae.resolution,
  };
  if (stage === 'dvae') {
    const pixels = spec.dvae.resolution * spec.dvae.resolution * 3;
    return {
      async batch(step, rank, worldSize): Promise<DvaeBatch> {
        const b = await loadBatch(ds, { ...common, step, rank, worldSize, pipeline: 'dvae' });
        // The slice's place in the global batch keys each sample's Gumbel noise (model/gumbel.ts).
        const first =
          rankSlice(step, rank, worldSize, spec.train.batchSize).start - step * spec.train.batchSize;
        return { images: b.images, n: b.n, first };
      },
      slice(batch, from, to): DvaeBatch {
        const b = batch as DvaeBatch;
        return {
          images: b.images.subarray(from * pixels, to * pixels),
          n: to - from,
          first: (b.first ?? 0) + from,
        };
      },
    };
  }
  const enc = await encodedData(checkpoints, runId);
  if (stage === 'rerank') return rerankBatches(spec, ds, enc.tokenizer);
  return {
    async batch(step, rank, worldSize): Promise<TransformerBatch> {
      // Images are not needed (their tokens are precomputed); captions and indices come from the same
      // loader so both stages agree on the order and on caption draws.
      const b = await loadBatch(ds, { ...common, step, rank, worldSize, pipeline: 'transformer' });
      return transformerBatch(b, enc, spec);
    },
    slice(batch, from, to): TransformerBatch {
      const b = batch as TransformerBatch;
      const { textLen } = spec.transformer;
      const per = enc.tokensPerImage;
      return {
        text: b.text.subarray(from * textLen, to * textLen),
        image: b.image.subarray(from * per, to * per),
        n: to - from,
      };
    },
  };
}

/** The dVAE's probe for codebook splitting: the first codeSplitProbe images (256 when absent) of the
 *  training order at step 0, preprocessed as the dVAE sees them; the same on every rank and after every
 *  resume. Undefined when dvae.codeSplitEvery is off. */
export async function dvaeProbe(spec: RunSpec, ds?: Dataset): Promise<Uint8Array | undefined> {
  if (!((spec.dvae.codeSplitEvery ?? 0) > 0)) return undefined;
  const data = ds ?? (await dataset(spec.dataset));
  const n = Math.min(spec.dvae.codeSplitProbe ?? 256, data.size);
  const b = await loadBatch(data, {
    seed: spec.train.seed,
    globalBatch: n,
    resolution: spec.dvae.resolution,
    step: 0,
    rank: 0,
    worldSize: 1,
    pipeline: 'dvae',
  });
  return b.images;
}

/** Stage 2's batch for a loaded batch: each caption as the transformer trains on it (transformerCaption:
 *  BPE dropout and caption dropout keyed by its stream position) next to the precomputed dVAE tokens of
 *  the same dataset item. */
export function transformerBatch(
  b: Pick<Batch, 'n' | 'captions' | 'indices' | 'positions'>,
  enc: Pick<EncodedData, 'tokenizer' | 'tokens' | 'tokensPerImage'>,
  spec: RunSpec,
): TransformerBatch {
  const { textLen } = spec.transformer;
  const text = new Int32Array(b.n * textLen);
  const image = new Int32Array(b.n * enc.tokensPerImage);
  for (let j = 0; j < b.n; j++) {
    text.set(transformerCaption(enc.tokenizer, b.captions[j]!, b.positions[j]!, spec), j * textLen);
    const i = b.indices[j]!;
    image.set(
      enc.tokens.subarray(i * enc.tokensPerImage, (i + 1) * enc.tokensPerImage),
      j * enc.tokensPerImage,
    );
  }
  return { text, image, n: b.n };
}

/** The reranker's pairs of (step, rank, W): the transformer's preprocessing and the run's tokenizer with BPE
 *  dropout keyed by stream position. Exported for `dalle bench rerank`, which trains on exactly these. */
export function rerankBatches(
  spec: RunSpec,
  ds: Dataset,
  tokenizer: Pick<Tokenizer, 'encode'>,
): StageBatchSource {
  const { textLen, bpeDropout } = spec.transformer;
  const seed = spec.train.seed;
  const common = { seed, globalBatch: stageBatchSize(spec, 'rerank'), resolution: spec.dvae.resolution };
  return {
    async batch(step, rank, worldSize): Promise<RerankBatch> {
      // The reranker must tell left from right: the transformer's pipeline (no flip), not the dVAE's.
      const b = await loadBatch(ds, { ...common, step, rank, worldSize, pipeline: 'transformer' });
      const text = new Int32Array(b.n * textLen);
      for (let j = 0; j < b.n; j++) {
        const t = tokenizer.encode(b.captions[j]!, textLen, {
          dropout: bpeDropout,
          seed: mixSeed(seed, 'rerank-bpe', b.positions[j]!),
        });
        text.set(t.ids, j * textLen);
      }
      return { images: b.images, text, n: b.n };
    },
    slice(batch, from, to): RerankBatch {
      const b = batch as RerankBatch;
      const pixels = spec.dvae.resolution * spec.dvae.resolution * 3;
      return {
        images: b.images.subarray(from * pixels, to * pixels),
        text: b.text.subarray(from * textLen, to * textLen),
        n: to - from,
      };
    },
  };
}
