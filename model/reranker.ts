// Stage 3: the reranker, a CLIP-style contrastive text–image model (Radford et al. 2021, at toy scale).
// The paper draws many samples per caption and keeps the ones a contrastive model scores highest; this is
// that model, trained on the run's own pairs.
//
// It reads pixels, not dVAE tokens: it judges what the user is shown (the decoder's mistakes included), it
// scores users' real photos the same way as generated images (`dalle eval` on any dataset), and its
// verdict does not change when the dVAE is retrained.
//
// Image encoder: x/127.5 − 1 → S stages of [3×3 conv + ReLU → 2×2 max-pool] (widths w, 2w, 4w, …) → the
//   last feature map flattened (position and size survive; a global pool would drop them) → linear, plus a
//   colour head: per-pixel ReLU detectors of RGB, each max- and mean-pooled over the whole image → linear;
//   → L2.
// Text encoder: token + position embeddings → `textLayers` pre-LN blocks (self-attention over the
//   caption's tokens, padding masked out; GELU MLP) → LN → mean over the caption's tokens → linear → L2.
//   With no blocks the text embedding is a projected bag of words: additive in the words, so a colour and
//   a shape never seen together in a caption still get a sensible embedding.
// Score: the cosine of the two embeddings. Loss: symmetric cross-entropy over a batch's n × n cosines
//   times a learned scale (clipped at logitScaleMax), the i-th caption being the i-th image's.
//
// Embedding lookups are one-hot matmuls (gather's gradient is missing from tfjs-backend-wasm).
import * as tf from '@tensorflow/tfjs';
import type { DvaeConfig, RerankConfig, TransformerConfig } from '../config/index.ts';
import { mixSeed, normals, RngStream } from '../random/index.ts';
import { conv2dBias } from './ops/conv.ts';
import { gelu } from './ops/gelu.ts';
import { layerNorm } from './ops/layer-norm.ts';
import { relu } from './ops/relu.ts';
import type { ParamSpec } from './trainer.ts';

/** Sizes every part of the reranker derives from the configs. */
export interface RerankerDims {
  /** Image side in pixels (dvae.resolution). */
  resolution: number;
  /** Caption positions and BPE vocabulary (the transformer's: both stages read the same tokens). */
  textLen: number;
  textVocab: number;
  embedDim: number;
  /** Conv width of each image stage. */
  widths: number[];
  /** Side of the last feature map and the flattened feature count side²·widths[last]. */
  featureSide: number;
  features: number;
  textWidth: number;
  textLayers: number;
  textHeads: number;
  /** The conv stack also sees the raw RGB channels (config rgbInConv). */
  rgbInConv: boolean;
}

/** A reranker config that cannot be built. Fatal: no retry changes a config. */
export class RerankerConfigError extends Error {
  override name = 'RerankerConfigError';
  readonly fatal = true;
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`rerank.${field} = ${String(value)}: ${rule}`);
  }
}

/** Parameter arrays that do not match the config's parameter list. */
export class RerankerParamsError extends Error {
  override name = 'RerankerParamsError';
  constructor(readonly problems: string[]) {
    super(`reranker parameters do not fit the config:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Images or captions handed to the reranker that do not fit it. */
export class RerankerInputError extends Error {
  override name = 'RerankerInputError';
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`reranker ${field}: ${reason}`);
  }
}

export function rerankerDims(
  cfg: RerankConfig,
  transformer: Pick<TransformerConfig, 'textLen' | 'vocabSize'>,
  dvae: Pick<DvaeConfig, 'resolution'>,
): RerankerDims {
  const side = dvae.resolution / 2 ** cfg.imageStages;
  if (!Number.isInteger(side) || side < 1)
    throw new RerankerConfigError(
      'imageStages',
      cfg.imageStages,
      `dvae.resolution ${dvae.resolution} must be divisible by 2^imageStages`,
    );
  if (cfg.textWidth % cfg.textHeads !== 0)
    throw new RerankerConfigError(
      'textWidth',
      cfg.textWidth,
      `must be divisible by textHeads (${cfg.textHeads})`,
    );
  if (!(cfg.logitScaleInit <= cfg.logitScaleMax))
    throw new RerankerConfigError(
      'logitScaleInit',
      cfg.logitScaleInit,
      `must be ≤ logitScaleMax (${cfg.logitScaleMax})`,
    );
  const widths = Array.from({ length: cfg.imageStages }, (_, s) => cfg.imageWidth * 2 ** s);
  return {
    resolution: dvae.resolution,
    textLen: transformer.textLen,
    textVocab: transformer.vocabSize,
    embedDim: cfg.embedDim,
    widths,
    featureSide: side,
    features: side * side * widths.at(-1)!,
    textWidth: cfg.textWidth,
    textLayers: cfg.textLayers,
    textHeads: cfg.textHeads,
    rgbInConv: cfg.rgbInConv,
  };
}

/** Colour detectors of the colour head (per-pixel RGB in, each max- and mean-pooled over the image). */
const COLOR_HIDDEN = 32;
/** The mean of a detector is small (most pixels are background): this gain starts it near the max's scale. */
const COLOR_MEAN_GAIN = 8;

/** Every parameter in a fixed order (the order of grads, checkpoints and published arrays). */
export function rerankerParamSpecs(D: RerankerDims): ParamSpec[] {
  const W = D.textWidth;
  const specs: ParamSpec[] = [];
  D.widths.forEach((w, s) => {
    specs.push(
      {
        name: `image.conv${s}.w`,
        shape: [3, 3, s > 0 ? D.widths[s - 1]! : D.rgbInConv ? 6 : 3, w],
        kind: 'matrix',
      },
      { name: `image.conv${s}.b`, shape: [w], kind: 'bias' },
    );
  });
  specs.push(
    { name: 'image.proj.w', shape: [D.features, D.embedDim], kind: 'matrix' },
    { name: 'image.color.fc.w', shape: [3, COLOR_HIDDEN], kind: 'matrix' },
    { name: 'image.color.fc.b', shape: [COLOR_HIDDEN], kind: 'bias' },
    { name: 'image.color.proj.w', shape: [2 * COLOR_HIDDEN, D.embedDim], kind: 'matrix' },
    { name: 'text.embed', shape: [D.textVocab, W], kind: 'embedding' },
    { name: 'text.pos', shape: [D.textLen, W], kind: 'embedding' },
  );
  for (let l = 0; l < D.textLayers; l++) {
    const p = `text.layer${l}`;
    specs.push(
      { name: `${p}.ln1.g`, shape: [W], kind: 'gain' },
      { name: `${p}.ln1.b`, shape: [W], kind: 'bias' },
      { name: `${p}.attn.qkv.w`, shape: [W, 3 * W], kind: 'matrix' },
      { name: `${p}.attn.qkv.b`, shape: [3 * W], kind: 'bias' },
      { name: `${p}.attn.proj.w`, shape: [W, W], kind: 'matrix' },
      { name: `${p}.attn.proj.b`, shape: [W], kind: 'bias' },
      { name: `${p}.ln2.g`, shape: [W], kind: 'gain' },
      { name: `${p}.ln2.b`, shape: [W], kind: 'bias' },
      { name: `${p}.mlp.fc.w`, shape: [W, 4 * W], kind: 'matrix' },
      { name: `${p}.mlp.fc.b`, shape: [4 * W], kind: 'bias' },
      { name: `${p}.mlp.proj.w`, shape: [4 * W, W], kind: 'matrix' },
      { name: `${p}.mlp.proj.b`, shape: [W], kind: 'bias' },
    );
  }
  specs.push(
    { name: 'text.ln.g', shape: [W], kind: 'gain' },
    { name: 'text.ln.b', shape: [W], kind: 'bias' },
    { name: 'text.proj.w', shape: [W, D.embedDim], kind: 'matrix' },
    // log of the logit scale: a scalar gain (uncompressed, no weight decay).
    { name: 'logitScale', shape: [1], kind: 'gain' },
  );
  return specs;
}

/** Initial parameters, a pure function of `seed`: He-normal convs, N(0, 1/fan_in) projections, N(0, 0.02)
 *  embeddings and attention/MLP matrices (residual outputs scaled by 1/√(2·layers)), gains 1, biases 0,
 *  logit scale logitScaleInit. Keyed apart from the transformer's init (same seed, other stream key). */
export function initRerankerParams(cfg: RerankConfig, D: RerankerDims, seed: number): Float32Array[] {
  const key = mixSeed(seed, 'rerank-init');
  const residualStd = 0.02 / Math.sqrt(2 * Math.max(1, D.textLayers));
  return rerankerParamSpecs(D).map((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.name === 'logitScale') return Float32Array.of(Math.log(cfg.logitScaleInit));
    if (s.kind === 'gain') return new Float32Array(n).fill(1);
    if (s.kind === 'bias') return new Float32Array(n);
    let std = 0.02;
    if (s.name.startsWith('image.conv')) std = Math.sqrt(2 / (9 * s.shape[2]!));
    else if (s.name === 'image.color.fc.w') std = Math.sqrt(2 / s.shape[0]!);
    else if (s.name.endsWith('proj.w') && !s.name.includes('.layer')) std = 1 / Math.sqrt(s.shape[0]!);
    else if (s.name.endsWith('.proj.w')) std = residualStd;
    const z = normals({ seed: key, stream: RngStream.init, step: i, rank: 0 }, n);
    for (let j = 0; j < n; j++) z[j]! *= std;
    return z;
  });
}

/** Images (and captions) per forward pass in `score`: bounds memory for thousands of candidates. */
const SCORE_CHUNK = 128;

/** int32 one-hot then cast: tfjs-backend-wasm 4.22's OneHot ignores a float32 dtype. */
function oneHot(indices: tf.Tensor1D, depth: number): tf.Tensor2D {
  return tf.oneHot(indices, depth, 1, 0, 'int32').cast('float32') as tf.Tensor2D;
}

function l2Normalize(x: tf.Tensor2D): tf.Tensor2D {
  return x.div(x.square().sum(-1, true).add(1e-12).sqrt()) as tf.Tensor2D;
}

/** The loss of one batch and what it tells about the batch. */
export interface RerankerLoss {
  /** Symmetric cross-entropy (image → caption and caption → image), scalar. */
  loss: tf.Scalar;
  /** The B × B scaled cosines, image i against caption j. */
  logits: tf.Tensor2D;
  /** The clipped logit scale, scalar. */
  scale: tf.Scalar;
}

/**
 * The model over a list of parameter tensors in `rerankerParamSpecs` order. It does not own borrowed
 * tensors (a trainer's variables); `fromArrays` makes one that owns its tensors.
 */
export class Reranker {
  readonly dims: RerankerDims;
  readonly specs: ParamSpec[];
  private readonly p: Map<string, tf.Tensor>;
  private disposed = false;

  constructor(
    readonly cfg: RerankConfig,
    dims: RerankerDims,
    params: readonly tf.Tensor[],
    private readonly ownParams = false,
  ) {
    this.dims = dims;
    this.specs = rerankerParamSpecs(dims);
    const problems: string[] = [];
    if (params.length !== this.specs.length)
      problems.push(`${params.length} tensors for ${this.specs.length} parameters`);
    else
      this.specs.forEach((s, i) => {
        if (params[i]!.shape.join('x') !== s.shape.join('x'))
          problems.push(`${s.name} has shape [${params[i]!.shape}], expected [${s.shape}]`);
      });
    if (problems.length > 0) throw new RerankerParamsError(problems);
    this.p = new Map(this.specs.map((s, i) => [s.name, params[i]!]));
  }

  /** A model that owns tensors made from `arrays` (e.g. the EMA weights of a published bundle). */
  static fromArrays(cfg: RerankConfig, dims: RerankerDims, arrays: readonly Float32Array[]): Reranker {
    const specs = rerankerParamSpecs(dims);
    const problems: string[] = [];
    if (arrays.length !== specs.length)
      problems.push(`${arrays.length} arrays for ${specs.length} parameters`);
    else
      specs.forEach((s, i) => {
        const n = s.shape.reduce((a, b) => a * b, 1);
        if (!(arrays[i] instanceof Float32Array) || arrays[i]!.length !== n)
          problems.push(`${s.name} has ${arrays[i]?.length ?? 'no'} values, expected ${n}`);
      });
    if (problems.length > 0) throw new RerankerParamsError(problems);
    return new Reranker(
      cfg,
      dims,
      specs.map((s, i) => tf.tensor(arrays[i]!, s.shape, 'float32')),
      true,
    );
  }

  private w(name: string): tf.Tensor {
    const t = this.p.get(name);
    if (!t) throw new RerankerParamsError([`no parameter ${name}`]);
    return t;
  }

  /** uint8-valued images [n, R, R, 3] → unit embeddings [n, E]. */
  embedImages(images: tf.Tensor4D): tf.Tensor2D {
    return tf.tidy(() => {
      const n = images.shape[0];
      const R = this.dims.resolution;
      const raw = images.toFloat();
      const { mean, variance } = tf.moments(raw, [1, 2], true); // [n, 1, 1, 3]: per image and channel
      const std = variance.add(1).sqrt();
      const contrast = raw.sub(mean).div(std);
      let x = (
        this.dims.rgbInConv ? tf.concat([raw.div(127.5).sub(1), contrast], 3) : contrast
      ) as tf.Tensor4D;
      this.dims.widths.forEach((_, s) => {
        x = conv2dBias(x, this.w(`image.conv${s}.w`) as tf.Tensor4D, this.w(`image.conv${s}.b`), 'relu');
        x = tf.maxPool(x, 2, 2, 'valid'); // [n, side/2, side/2, w_s]
      });
      const flat = x.reshape([n, this.dims.features]) as tf.Tensor2D;
      // Colour: each detector (a ReLU of the pixel's RGB) at its strongest anywhere in the image, so a
      // colour reads the same at every size, position and shape, and its mean over the image, so that a few
      // stray pixels of a decoder's image do not outvote the figure's own colour.
      const pixels = raw
        .div(127.5)
        .sub(1)
        .reshape([n * R * R, 3]) as tf.Tensor2D;
      const detectors = relu(
        tf.matMul(pixels, this.w('image.color.fc.w') as tf.Tensor2D).add(this.w('image.color.fc.b')),
      ).reshape([n, R * R, COLOR_HIDDEN]);
      const pooled = tf.concat([detectors.max(1), detectors.mean(1).mul(COLOR_MEAN_GAIN)], 1) as tf.Tensor2D;
      const color = tf.matMul(pooled, this.w('image.color.proj.w') as tf.Tensor2D);
      return l2Normalize(tf.matMul(flat, this.w('image.proj.w') as tf.Tensor2D).add(color));
    });
  }

  /** Caption ids [n, L] (0 = padding) → unit embeddings [n, E]. */
  embedTexts(text: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const { textLen: L, textVocab: V, textWidth: W, textHeads: H } = this.dims;
      const n = text.shape[0];
      const real = text.notEqual(0).cast('float32'); // [n, L]
      let x: tf.Tensor = tf
        .matMul(oneHot(text.reshape([n * L]) as tf.Tensor1D, V), this.w('text.embed') as tf.Tensor2D)
        .reshape([n, L, W])
        .add(this.w('text.pos')); // [n, L, W]
      const keyBias = tf.scalar(1).sub(real).mul(-1e9).reshape([n, 1, 1, L]); // padding is never attended to
      const dh = W / H;
      const heads = (t: tf.Tensor) => t.reshape([n, L, H, dh]).transpose([0, 2, 1, 3]); // [n, H, L, dh]
      for (let l = 0; l < this.dims.textLayers; l++) {
        const q = `text.layer${l}`;
        const h = layerNorm(x, this.w(`${q}.ln1.g`), this.w(`${q}.ln1.b`)).reshape([n * L, W]) as tf.Tensor2D;
        const qkv = tf.matMul(h, this.w(`${q}.attn.qkv.w`) as tf.Tensor2D).add(this.w(`${q}.attn.qkv.b`));
        const [qq, kk, vv] = tf.split(qkv, 3, 1).map(heads);
        const att = tf.softmax(
          tf
            .matMul(qq!, kk!, false, true)
            .mul(1 / Math.sqrt(dh))
            .add(keyBias),
        ); // [n, H, L, L]
        const y = tf
          .matMul(att, vv!)
          .transpose([0, 2, 1, 3])
          .reshape([n * L, W]) as tf.Tensor2D;
        const a = tf.matMul(y, this.w(`${q}.attn.proj.w`) as tf.Tensor2D).add(this.w(`${q}.attn.proj.b`));
        x = x.add(a.reshape([n, L, W]));
        const h2 = layerNorm(x, this.w(`${q}.ln2.g`), this.w(`${q}.ln2.b`)).reshape([
          n * L,
          W,
        ]) as tf.Tensor2D;
        const m = gelu(tf.matMul(h2, this.w(`${q}.mlp.fc.w`) as tf.Tensor2D).add(this.w(`${q}.mlp.fc.b`)));
        const mo = tf
          .matMul(m as tf.Tensor2D, this.w(`${q}.mlp.proj.w`) as tf.Tensor2D)
          .add(this.w(`${q}.mlp.proj.b`));
        x = x.add(mo.reshape([n, L, W]));
      }
      const h = layerNorm(x, this.w('text.ln.g'), this.w('text.ln.b')); // [n, L, W]
      const count = real.sum(1, true).maximum(1); // [n, 1]: an all-padding caption pools to zeros, not NaN
      const pooled = h.mul(real.expandDims(2)).sum(1).div(count) as tf.Tensor2D; // [n, W]
      return l2Normalize(tf.matMul(pooled, this.w('text.proj.w') as tf.Tensor2D));
    });
  }

  /** Image and caption embeddings of n pairs side by side, [n, 2E]: what a rank contributes to the
   *  global batch's loss (see `losses`). */
  embedPairs(images: tf.Tensor4D, text: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => tf.concat([this.embedImages(images), this.embedTexts(text)], 1) as tf.Tensor2D);
  }

  /**
   * The contrastive loss of a global batch of B pairs (differentiable w.r.t. the parameter tensors): image
   * i against all B captions and caption i against all B images, i's own being the positive. This rank's
   * n pairs are embedded here, with gradients; the others come in `batch.pairs` ([B, 2E] from
   * `embedPairs` on every rank, this rank's rows at `batch.offset`), as constants. Summed over ranks, the
   * gradients are those of the loss with every pair embedded here (chain rule, split by the rank that owns
   * each embedding). Without `batch`, B = n and one rank.
   */
  losses(
    images: tf.Tensor4D,
    text: tf.Tensor2D,
    batch?: { pairs: tf.Tensor2D; offset: number; ranks: number },
  ): RerankerLoss {
    return tf.tidy(() => {
      const n = images.shape[0];
      const E = this.dims.embedDim;
      // Every rank differentiates the whole batch's loss, so the scale (a direct parameter, not reached
      // through this rank's embeddings) takes 1/ranks of its gradient here: the same value, the ranks'
      // shares summing to one gradient.
      const share = 1 / (batch?.ranks ?? 1);
      const logScale = this.w('logitScale').minimum(Math.log(this.cfg.logitScaleMax));
      const fixed = tf.tensor(logScale.dataSync(), logScale.shape); // off the tape: a constant
      const scale = logScale
        .mul(share)
        .add(fixed.mul(1 - share))
        .exp()
        .reshape([]) as tf.Scalar;
      let img = this.embedImages(images); // [n, E]
      let txt = this.embedTexts(text);
      if (batch) {
        const { pairs, offset } = batch;
        const B = pairs.shape[0];
        const around = (t: tf.Tensor2D, col: number) =>
          tf.concat(
            [pairs.slice([0, col], [offset, E]), t, pairs.slice([offset + n, col], [B - offset - n, E])],
            0,
          ) as tf.Tensor2D;
        img = around(img, 0);
        txt = around(txt, E);
      }
      const B = img.shape[0];
      const logits = tf.matMul(img, txt, false, true).mul(scale) as tf.Tensor2D; // [B, B]
      const eye = tf.eye(B);
      const ce = (lg: tf.Tensor) => tf.logSoftmax(lg).mul(eye).sum().neg().div(B);
      const loss = ce(logits).add(ce(logits.transpose())).div(2) as tf.Scalar;
      return { loss, logits, scale };
    });
  }

  /** Throws RerankerInputError unless `text` is [n, L] ids in the vocabulary and `images` [n, R, R, 3]. */
  checkInputs(text: Int32Array, images: Uint8Array, n: number): void {
    checkRerankerInputs(this.dims, text, images, n);
  }

  /** The cosine of caption i and image i, for n pairs: caption ids [n, L], RGB [n, R, R, 3]. */
  score(text: Int32Array, images: Uint8Array, n: number): Float32Array {
    this.checkInputs(text, images, n);
    const { textLen: L, resolution: R } = this.dims;
    const out = new Float32Array(n);
    for (let at = 0; at < n; at += SCORE_CHUNK) {
      const m = Math.min(SCORE_CHUNK, n - at);
      const cos = tf.tidy(() => {
        const img = tf.tensor4d(images.subarray(at * R * R * 3, (at + m) * R * R * 3), [m, R, R, 3], 'int32');
        const txt = tf.tensor2d(text.subarray(at * L, (at + m) * L), [m, L], 'int32');
        return this.embedImages(img).mul(this.embedTexts(txt)).sum(-1);
      });
      out.set(cos.dataSync() as Float32Array, at);
      cos.dispose();
    }
    return out;
  }

  /** Every image against every caption: cosines [n images, m captions] row-major, each side embedded once
   *  (retrieval metrics such as R-precision). */
  similarities(text: Int32Array, m: number, images: Uint8Array, n: number): Float32Array {
    checkText(this.dims, text, m);
    checkImages(this.dims, images, n);
    const { textLen: L, resolution: R } = this.dims;
    const chunked = (count: number, embed: (at: number, k: number) => tf.Tensor2D): tf.Tensor2D => {
      const parts: tf.Tensor2D[] = [];
      for (let at = 0; at < count; at += SCORE_CHUNK)
        parts.push(embed(at, Math.min(SCORE_CHUNK, count - at)));
      const all = tf.concat(parts, 0) as tf.Tensor2D;
      tf.dispose(parts);
      return all;
    };
    const txt = chunked(m, (at, k) =>
      tf.tidy(() => this.embedTexts(tf.tensor2d(text.subarray(at * L, (at + k) * L), [k, L], 'int32'))),
    );
    const img = chunked(n, (at, k) =>
      tf.tidy(() =>
        this.embedImages(
          tf.tensor4d(images.subarray(at * R * R * 3, (at + k) * R * R * 3), [k, R, R, 3], 'int32'),
        ),
      ),
    );
    const sim = tf.matMul(img, txt, false, true);
    const out = sim.dataSync() as Float32Array;
    tf.dispose([txt, img, sim]);
    return out;
  }

  /** Releases the parameters when this model owns them. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.ownParams) tf.dispose([...this.p.values()]);
  }
}

/** Throws RerankerInputError unless `text` is [n, L] ids in the vocabulary and `images` [n, R, R, 3]. */
export function checkRerankerInputs(
  dims: RerankerDims,
  text: Int32Array,
  images: Uint8Array,
  n: number,
): void {
  checkText(dims, text, n);
  checkImages(dims, images, n);
}

function checkText(dims: RerankerDims, text: Int32Array, m: number): void {
  const { textLen: L, textVocab: V } = dims;
  if (!(Number.isInteger(m) && m >= 1))
    throw new RerankerInputError('n', `must be a positive integer, got ${m}`);
  if (!(text instanceof Int32Array) || text.length !== m * L)
    throw new RerankerInputError(
      'text',
      `must be an Int32Array of n·textLen = ${m * L} ids, got ${text?.length}`,
    );
  for (let i = 0; i < text.length; i++)
    if (text[i]! < 0 || text[i]! >= V)
      throw new RerankerInputError('text', `id ${text[i]} at ${i} is outside [0, ${V})`);
}

function checkImages(dims: RerankerDims, images: Uint8Array, n: number): void {
  const R = dims.resolution;
  if (!(Number.isInteger(n) && n >= 1))
    throw new RerankerInputError('n', `must be a positive integer, got ${n}`);
  if (!(images instanceof Uint8Array) || images.length !== n * R * R * 3)
    throw new RerankerInputError(
      'images',
      `must be n·${R}·${R}·3 = ${n * R * R * 3} bytes, got ${images?.length}`,
    );
}
