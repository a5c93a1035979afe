// The SamplingModel of a published bundle (store/bundle.ts): tokenizer → transformer with KV-cache
// sessions (model/sampling.ts) → dVAE decoder (model/dvae.ts). The only file of the service that touches
// tfjs; everything above it sees typed arrays.
import * as tf from '@tensorflow/tfjs';
import { Tokenizer } from '../../data/tokenizer.ts';
import {
  createSampler,
  decodeState,
  Dvae,
  dvaeParamSpecs,
  expectArrays,
  initTfBackend,
  type ParamSpec,
  type Sampler,
  type SamplerSession,
  Transformer,
  transformerParamSpecs,
} from '../../model/index.ts';
import { decodeBundle } from '../../store/bundle.ts';
import { BadContainerError } from '../../store/sections.ts';
import type {
  ModelFacts,
  ModelLoader,
  RowResult,
  RowSpec,
  SamplingModel,
  SamplingSession,
} from './engine.ts';
import { InvalidArgumentError } from './errors.ts';

/** Arrays of a state-io blob in `specs` order, checked name by name and length by length. */
function arraysFor(blob: Uint8Array, specs: ParamSpec[]): Float32Array[] {
  const { arrays } = decodeState(blob);
  const sized = specs.map((s) => [s.name, s.shape.reduce((a, b) => a * b, 1)] as const);
  expectArrays(arrays, sized);
  return specs.map((s) => arrays.get(s.name)!);
}

/**
 * Mean log-likelihood per image token of finished rows under the model at temperature 1, from one
 * cache-free forward pass over the whole sequence: the transformer's own verdict on the image, usable for
 * reranking (the paper reranks with CLIP, which this system does not have).
 */
function likelihoods(model: Transformer, text: Int32Array, tokens: Int32Array, n: number): Float32Array {
  const { textLen: L, imageLen: N, imageVocab: K } = model.dims;
  const scores = tf.tidy(() => {
    const t = tf.tensor2d(text, [n, L], 'int32');
    const img = tf.tensor2d(tokens, [n, N], 'int32');
    const prefix = N > 1 ? img.slice([0, 0], [n, N - 1]) : null;
    const logp = tf.logSoftmax(model.logits(t, prefix).image); // [n, N, K]
    // int32 one-hot then cast: tfjs-backend-wasm 4.22's OneHot ignores dtype 'float32' (it writes the
    // int32 bit patterns, i.e. 1 reads as 1.4e-45).
    const picked = logp.mul(tf.oneHot(img, K).toFloat()).sum(-1); // [n, N]
    return picked.mean(-1); // [n]
  });
  const out = scores.dataSync() as Float32Array;
  scores.dispose();
  return out;
}

class TfSession implements SamplingSession {
  private readonly inner: SamplerSession;
  private readonly cancelled: boolean[];
  private disposed = false;

  constructor(
    private readonly model: TfModel,
    private readonly specs: RowSpec[],
  ) {
    // index 0 for every row: a row's draws then depend on its own seed alone, so image i of a request
    // (seed s + i) is reproduced by a one-image request with that seed.
    this.inner = model.sampler.start(
      specs.map((r) => ({
        text: r.text,
        temperature: r.temperature,
        topK: r.topK,
        topP: r.topP,
        seed: r.seed,
        index: 0,
      })),
    );
    this.cancelled = specs.map(() => false);
  }

  get rows(): number {
    return this.specs.length;
  }

  get tokensPerRow(): number {
    return this.model.transformer.dims.imageLen;
  }

  get position(): number {
    return this.inner.position;
  }

  get liveRows(): number {
    return this.done ? 0 : this.cancelled.filter((c) => !c).length;
  }

  get done(): boolean {
    return this.disposed || this.inner.done;
  }

  step(): { row: number; result: RowResult }[] {
    const { position, advanced } = this.inner.step();
    if (position < this.tokensPerRow) return [];
    const L = this.model.transformer.dims.textLen;
    const N = this.tokensPerRow;
    const text = new Int32Array(advanced.length * L);
    const tokens = new Int32Array(advanced.length * N);
    advanced.forEach((row, k) => {
      text.set(this.specs[row]!.text, k * L);
      tokens.set(this.inner.tokens(row), k * N);
    });
    const scores = likelihoods(this.model.transformer, text, tokens, advanced.length);
    return advanced.map((row, k) => ({
      row,
      result: { tokens: tokens.slice(k * N, (k + 1) * N), score: scores[k]! },
    }));
  }

  cancel(row: number): void {
    if (this.cancelled[row] || this.inner.done) return;
    this.cancelled[row] = true;
    this.inner.cancel(row);
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.inner.dispose();
  }
}

class TfModel implements SamplingModel {
  readonly sampler: Sampler;

  constructor(
    readonly facts: ModelFacts,
    readonly transformer: Transformer,
    readonly dvae: Dvae,
    readonly tokenizer: Tokenizer,
  ) {
    this.sampler = createSampler(transformer);
  }

  encodePrompt(prompt: string): Int32Array {
    const enc = this.tokenizer.encode(prompt, this.facts.textLen);
    if (enc.length === 0)
      throw new InvalidArgumentError('prompt', 'has no tokens after normalization (only whitespace?)');
    return enc.ids;
  }

  start(rows: RowSpec[]): SamplingSession {
    return new TfSession(this, rows);
  }

  decode(tokens: Int32Array, n: number): Uint8Array {
    const N = this.facts.grid * this.facts.grid;
    if (tokens.length !== n * N)
      throw new RangeError(`decode: ${tokens.length} tokens for ${n} images of ${N}`);
    return this.dvae.decode(tokens);
  }

  dispose(): void {
    this.transformer.dispose();
    this.dvae.dispose();
  }
}

/** Builds a SamplingModel from bundle bytes (verified by the store). Initializes the tfjs backend. */
export const loadBundleModel: ModelLoader = async (bytes, v) => {
  await initTfBackend();
  // Everything read from the bundle is checked before a tensor exists; what does not fit is a corrupt
  // (or forged) bundle: DATA_LOSS for whoever asked for it, never a crash.
  let decoded;
  try {
    const b = decodeBundle(bytes);
    const { spec } = b;
    decoded = {
      spec,
      tokenizer: Tokenizer.fromJSON(b.tokenizer),
      tArrays: arraysFor(b.transformer, transformerParamSpecs(spec.transformer, spec.dvae)),
      dArrays: arraysFor(b.dvae, dvaeParamSpecs(spec.dvae)),
    };
  } catch (e) {
    if (e instanceof BadContainerError) throw e;
    throw new BadContainerError(`model bundle ${v.name} v${v.version}: ${(e as Error).message}`, {
      cause: e,
    });
  }
  const { spec, tokenizer, tArrays, dArrays } = decoded;
  const transformer = Transformer.fromArrays(spec.transformer, spec.dvae, tArrays);
  let dvae: Dvae;
  try {
    dvae = Dvae.fromParams(spec.dvae, dArrays);
  } catch (e) {
    transformer.dispose();
    throw e;
  }
  const facts: ModelFacts = {
    name: v.name,
    version: v.version,
    resolution: spec.dvae.resolution,
    grid: spec.dvae.grid,
    codebookSize: spec.dvae.codebookSize,
    textLen: spec.transformer.textLen,
    preset: spec.preset,
    createdAt: v.createdAt,
  };
  return new TfModel(facts, transformer, dvae, tokenizer);
};
