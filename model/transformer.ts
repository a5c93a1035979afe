// Stage 2 of DALL-E (docs/model.md): a decoder-only sparse transformer over [text tokens, image tokens].
//
// Sequence, T = L + N positions (L = textLen, N = grid²; the paper's 256 + 1024 = 1280):
//   position p < L   text token t_p: tokenEmbed[t_p] + textPos[p], or, where t_p = 0 (padding), the
//                    learned padding vector textPad[p] of that position (the paper's per-position
//                    padding tokens: nothing is masked);
//   position L       start-of-image (a learned vector);
//   position L + j   image token z_{j−1} (j ≥ 1): imageEmbed[z] + row[r] + col[c] of its own cell (r, c).
// Position p < L − 1 predicts text token t_{p+1}; position L + j predicts image token z_j.
// Loss = textLossWeight · CE_text + imageLossWeight · CE_image, each the mean over its own token count
// (n·(L−1) text targets, padding included, as the count is fixed per caption; n·N image targets).
//
// Layers are pre-LN GPT blocks (LN → attention → residual, LN → MLP(GELU) → residual), one attention
// op per layer whose mask (./masks.ts) comes from the paper's layer rule. Logits: the final LN's output
// times the transposed token embeddings (tiedUnembedding, default) or separate unembedding matrices.
//
// Embedding lookups are one-hot matmuls, not tf.gather: gather's gradient (UnsortedSegmentSum) is
// missing from tfjs-backend-wasm, and a one-hot [n·L, V] × [V, d] matmul has a plain matmul gradient.
// Target picking in the loss is a one-hot product for the same reason.
import * as tf from '@tensorflow/tfjs';
import type { DvaeConfig, TransformerConfig } from '../config/index.ts';
import { attentionBias, layerKinds, type AttentionKind, type MaskGeometry } from './masks.ts';
import { attention } from './ops/attention.ts';
import { softmaxCrossEntropy } from './ops/cross-entropy.ts';
import { dense, denseGelu } from './ops/dense.ts';
import { layerNorm } from './ops/layer-norm.ts';
import { normals, RngStream } from '../random/index.ts';
import type { ParamSpec } from './trainer.ts';

/** Sizes every part of the model derives from the two configs. */
export interface TransformerDims {
  layers: number;
  heads: number;
  /** d_model */
  d: number;
  /** Per-head width d / heads. */
  dh: number;
  /** MLP hidden width mlpRatio · d. */
  mlp: number;
  /** Text positions L. */
  textLen: number;
  /** Text vocabulary (id 0 = padding). */
  textVocab: number;
  /** Image grid side w and image positions N = w². */
  grid: number;
  imageLen: number;
  /** Image vocabulary K (dVAE codebook). */
  imageVocab: number;
  /** L + N */
  seqLen: number;
  convKernel: number;
  tied: boolean;
}

/** A transformer config that cannot be built (e.g. d_model not divisible by heads). */
export class TransformerConfigError extends Error {
  override name = 'TransformerConfigError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`transformer ${field} = ${String(value)}: ${rule}`);
  }
}

/** Parameter arrays that do not match the config's parameter list. */
export class TransformerParamsError extends Error {
  override name = 'TransformerParamsError';
  constructor(readonly problems: string[]) {
    super(`transformer parameters do not fit the config:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Token ids outside their vocabulary, or arrays of the wrong length. */
export class TokenInputError extends Error {
  override name = 'TokenInputError';
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

export function transformerDims(cfg: TransformerConfig, dvae: DvaeConfig): TransformerDims {
  if (cfg.dModel % cfg.heads !== 0)
    throw new TransformerConfigError('dModel', cfg.dModel, `must be divisible by heads (${cfg.heads})`);
  if (cfg.convKernel % 2 !== 1)
    throw new TransformerConfigError('convKernel', cfg.convKernel, 'must be odd (the kernel is centred)');
  if (cfg.vocabSize < 2)
    throw new TransformerConfigError('vocabSize', cfg.vocabSize, 'must be ≥ 2 (id 0 is padding)');
  const imageLen = dvae.grid * dvae.grid;
  return {
    layers: cfg.layers,
    heads: cfg.heads,
    d: cfg.dModel,
    dh: cfg.dModel / cfg.heads,
    mlp: cfg.mlpRatio * cfg.dModel,
    textLen: cfg.textLen,
    textVocab: cfg.vocabSize,
    grid: dvae.grid,
    imageLen,
    imageVocab: dvae.codebookSize,
    seqLen: cfg.textLen + imageLen,
    convKernel: cfg.convKernel,
    tied: cfg.tiedUnembedding,
  };
}

export function maskGeometry(dims: TransformerDims): MaskGeometry {
  return { textLen: dims.textLen, grid: dims.grid, convKernel: dims.convKernel };
}

/** Every parameter in a fixed order (the order of grads, checkpoints and exported arrays). */
export function transformerParamSpecs(cfg: TransformerConfig, dvae: DvaeConfig): ParamSpec[] {
  const D = transformerDims(cfg, dvae);
  const { d, mlp } = D;
  const specs: ParamSpec[] = [
    { name: 'text.embed', shape: [D.textVocab, d], kind: 'embedding' },
    { name: 'text.pos', shape: [D.textLen, d], kind: 'embedding' },
    { name: 'text.pad', shape: [D.textLen, d], kind: 'embedding' },
    { name: 'image.start', shape: [1, d], kind: 'embedding' },
    { name: 'image.embed', shape: [D.imageVocab, d], kind: 'embedding' },
    { name: 'image.row', shape: [D.grid, d], kind: 'embedding' },
    { name: 'image.col', shape: [D.grid, d], kind: 'embedding' },
  ];
  for (let l = 0; l < D.layers; l++) {
    const p = `layer${l}`;
    specs.push(
      { name: `${p}.ln1.g`, shape: [d], kind: 'gain' },
      { name: `${p}.ln1.b`, shape: [d], kind: 'bias' },
      { name: `${p}.attn.qkv.w`, shape: [d, 3 * d], kind: 'matrix' },
      { name: `${p}.attn.qkv.b`, shape: [3 * d], kind: 'bias' },
      { name: `${p}.attn.proj.w`, shape: [d, d], kind: 'matrix' },
      { name: `${p}.attn.proj.b`, shape: [d], kind: 'bias' },
      { name: `${p}.ln2.g`, shape: [d], kind: 'gain' },
      { name: `${p}.ln2.b`, shape: [d], kind: 'bias' },
      { name: `${p}.mlp.fc.w`, shape: [d, mlp], kind: 'matrix' },
      { name: `${p}.mlp.fc.b`, shape: [mlp], kind: 'bias' },
      { name: `${p}.mlp.proj.w`, shape: [mlp, d], kind: 'matrix' },
      { name: `${p}.mlp.proj.b`, shape: [d], kind: 'bias' },
    );
  }
  specs.push(
    { name: 'final.ln.g', shape: [d], kind: 'gain' },
    { name: 'final.ln.b', shape: [d], kind: 'bias' },
  );
  if (!D.tied) {
    specs.push(
      { name: 'text.unembed', shape: [d, D.textVocab], kind: 'unembedding' },
      { name: 'image.unembed', shape: [d, D.imageVocab], kind: 'unembedding' },
    );
  }
  return specs;
}

/** Parameter count from the shapes alone (nothing allocated): `paper-12b` gives 12.195B tied, 12.293B untied. */
export function transformerParameterCount(cfg: TransformerConfig, dvae: DvaeConfig): number {
  return transformerParamSpecs(cfg, dvae).reduce((sum, s) => sum + s.shape.reduce((a, b) => a * b, 1), 0);
}

/** Training FLOPs of one sequence (forward + backward ≈ 3 × forward, multiply-add = 2): the dense
 *  matmuls, the embedding one-hot matmuls and the attention over all T positions as computed here. */
export function transformerFlopsPerSequence(
  cfg: TransformerConfig,
  dvae: DvaeConfig,
): { forward: number; train: number } {
  const D = transformerDims(cfg, dvae);
  const T = D.seqLen;
  const perLayer = 2 * T * (D.d * 3 * D.d + D.d * D.d + 2 * D.d * D.mlp) + 2 * 2 * T * T * D.d;
  const embed = 2 * D.textLen * D.textVocab * D.d + 2 * D.imageLen * D.imageVocab * D.d;
  const logits = 2 * (D.textLen - 1) * D.textVocab * D.d + 2 * D.imageLen * D.imageVocab * D.d;
  const forward = D.layers * perLayer + embed + logits;
  return { forward, train: 3 * forward };
}

/** Initial parameters for `seed`: N(0, 0.02) for matrices and embeddings, the residual output
 *  projections scaled by 1/√(2·layers) (GPT-2), gains 1, biases 0. Parameter i draws from the
 *  counter-based stream (seed, init, step = i), so the init is independent of order of creation. */
export function initTransformerParams(
  cfg: TransformerConfig,
  dvae: DvaeConfig,
  seed: number,
): Float32Array[] {
  const specs = transformerParamSpecs(cfg, dvae);
  const residualStd = 0.02 / Math.sqrt(2 * cfg.layers);
  return specs.map((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.kind === 'gain') return new Float32Array(n).fill(1);
    if (s.kind === 'bias') return new Float32Array(n);
    const std = s.name.endsWith('.proj.w') ? residualStd : 0.02;
    const z = normals({ seed, stream: RngStream.init, step: i, rank: 0 }, n);
    for (let j = 0; j < n; j++) z[j]! *= std;
    return z;
  });
}

/** Keys and values of every layer for the positions seen so far: [R, H, t, dh] each. */
export interface KvCache {
  k: tf.Tensor4D[];
  v: tf.Tensor4D[];
  /** Positions cached (t). */
  length: number;
}

/** One-hot rows as float32. tfjs-backend-wasm 4.22's OneHot ignores a float32 dtype and writes int32
 *  bits (1 reads as 1.4e-45), so build int32 and cast: correct on every backend. */
function oneHot(indices: tf.Tensor, depth: number): tf.Tensor2D {
  return tf.oneHot(indices as tf.Tensor1D, depth, 1, 0, 'int32').cast('float32') as tf.Tensor2D;
}

/**
 * The model over a list of parameter tensors in `transformerParamSpecs` order. It does not own
 * borrowed tensors (the trainer's variables); `fromArrays` makes one that owns its tensors.
 */
export class Transformer {
  readonly dims: TransformerDims;
  readonly specs: ParamSpec[];
  readonly kinds: AttentionKind[];
  private p: Map<string, tf.Tensor> = new Map();
  /** Additive mask per layer kind, [T, T]. */
  private readonly bias: Map<AttentionKind, tf.Tensor2D>;
  /** One-hot cell → row / column selectors for the image positions, [N, w]. */
  private readonly rowSel: tf.Tensor2D;
  private readonly colSel: tf.Tensor2D;
  private readonly owned: tf.Tensor[];
  private disposed = false;

  /** `params` in `transformerParamSpecs` order; undefined leaves the model unbound until `bind` (a trainer
   *  binds the tensors of its parameter vector for each step). */
  constructor(
    readonly cfg: TransformerConfig,
    readonly dvae: DvaeConfig,
    params: readonly tf.Tensor[] | undefined,
    ownParams = false,
  ) {
    this.dims = transformerDims(cfg, dvae);
    this.specs = transformerParamSpecs(cfg, dvae);
    this.bind(params);
    this.kinds = layerKinds(this.dims.layers, cfg.attention ?? 'sparse');
    const geom = maskGeometry(this.dims);
    const T = this.dims.seqLen;
    this.bias = new Map(
      [...new Set(this.kinds)].map((k) => [k, tf.tensor2d(attentionBias(k, geom), [T, T])]),
    );
    const { grid, imageLen } = this.dims;
    const cells = Int32Array.from({ length: imageLen }, (_, j) => j);
    this.rowSel = tf.tidy(() =>
      oneHot(
        tf.tensor1d(
          cells.map((j) => Math.floor(j / grid)),
          'int32',
        ),
        grid,
      ),
    );
    this.colSel = tf.tidy(() =>
      oneHot(
        tf.tensor1d(
          cells.map((j) => j % grid),
          'int32',
        ),
        grid,
      ),
    );
    this.owned = [...this.bias.values(), this.rowSel, this.colSel, ...(ownParams && params ? params : [])];
  }

  /** Makes `params` (in `transformerParamSpecs` order) the tensors every method computes with; undefined
   *  unbinds. The model borrows them: the caller keeps them alive while it computes. */
  bind(params: readonly tf.Tensor[] | undefined): void {
    if (params === undefined) {
      this.p = new Map();
      return;
    }
    const problems: string[] = [];
    if (params.length !== this.specs.length)
      problems.push(`${params.length} tensors for ${this.specs.length} parameters`);
    else {
      this.specs.forEach((s, i) => {
        const t = params[i]!;
        if (t.shape.join('x') !== s.shape.join('x'))
          problems.push(`${s.name} has shape [${t.shape}], expected [${s.shape}]`);
        else if (t.dtype !== 'float32') problems.push(`${s.name} has dtype ${t.dtype}, expected float32`);
      });
    }
    if (problems.length > 0) throw new TransformerParamsError(problems);
    this.p = new Map(this.specs.map((s, i) => [s.name, params[i]!]));
  }

  /** A model that owns tensors made from `arrays` (e.g. a trainer's `exportParams('ema')`). */
  static fromArrays(cfg: TransformerConfig, dvae: DvaeConfig, arrays: readonly Float32Array[]): Transformer {
    const specs = transformerParamSpecs(cfg, dvae);
    const problems: string[] = [];
    if (arrays.length !== specs.length)
      problems.push(`${arrays.length} arrays for ${specs.length} parameters`);
    else {
      specs.forEach((s, i) => {
        const n = s.shape.reduce((a, b) => a * b, 1);
        if (!(arrays[i] instanceof Float32Array)) problems.push(`${s.name} is not a Float32Array`);
        else if (arrays[i]!.length !== n)
          problems.push(`${s.name} has ${arrays[i]!.length} values, expected ${n}`);
      });
    }
    if (problems.length > 0) throw new TransformerParamsError(problems);
    const tensors = specs.map((s, i) => tf.tensor(arrays[i]!, s.shape, 'float32'));
    return new Transformer(cfg, dvae, tensors, true);
  }

  private w(name: string): tf.Tensor {
    const t = this.p.get(name);
    if (!t)
      throw new TransformerParamsError([
        `no parameter ${name}${this.p.size ? '' : ' (no parameters bound)'}`,
      ]);
    return t;
  }

  /** Throws TokenInputError unless `text` is [n, L] ids in [0, vocab) and `image` [n, m] ids in [0, K). */
  checkTokens(text: Int32Array, n: number, image?: Int32Array, imageLen?: number): void {
    const D = this.dims;
    if (!Number.isInteger(n) || n < 1) throw new TokenInputError('n', `must be a positive integer, got ${n}`);
    if (!(text instanceof Int32Array)) throw new TokenInputError('text', 'must be an Int32Array');
    if (text.length !== n * D.textLen)
      throw new TokenInputError('text', `has ${text.length} ids, expected n·textLen = ${n}·${D.textLen}`);
    for (let i = 0; i < text.length; i++) {
      const t = text[i]!;
      if (t < 0 || t >= D.textVocab)
        throw new TokenInputError('text', `id ${t} at ${i} is outside [0, ${D.textVocab})`);
    }
    if (image === undefined) return;
    const m = imageLen ?? D.imageLen;
    if (!(image instanceof Int32Array)) throw new TokenInputError('image', 'must be an Int32Array');
    if (image.length !== n * m)
      throw new TokenInputError('image', `has ${image.length} ids, expected ${n}·${m}`);
    for (let i = 0; i < image.length; i++) {
      const z = image[i]!;
      if (z < 0 || z >= D.imageVocab)
        throw new TokenInputError('image', `id ${z} at ${i} is outside [0, ${D.imageVocab})`);
    }
  }

  // ---- embeddings ------------------------------------------------------------------------------------

  /** Text part of the input, [n, L, d]: token + position where the id is non-zero, the position's own
   *  padding vector where it is 0. */
  private embedText(text: tf.Tensor2D): tf.Tensor3D {
    const { textLen: L, textVocab, d } = this.dims;
    const n = text.shape[0];
    const oh = oneHot(text.reshape([n * L]), textVocab); // [n·L, V]
    const tok = tf.matMul(oh, this.w('text.embed')).reshape([n, L, d]); // [n, L, d]
    const isPad = text.equal(0).cast('float32').expandDims(2); // [n, L, 1]
    const real = tok.add(this.w('text.pos')).mul(tf.scalar(1).sub(isPad));
    return real.add(isPad.mul(this.w('text.pad'))) as tf.Tensor3D;
  }

  /** Image part of the input, [n, 1 + m, d]: start-of-image then image tokens z_0..z_{m−1} with the
   *  row and column embeddings of their own cells. */
  private embedImage(image: tf.Tensor2D | null, n: number): tf.Tensor3D {
    const { imageVocab, d } = this.dims;
    const start = this.w('image.start').reshape([1, 1, d]).tile([n, 1, 1]); // [n, 1, d]
    const m = image === null ? 0 : image.shape[1];
    if (m === 0) return start as tf.Tensor3D;
    const oh = oneHot(image!.reshape([n * m]), imageVocab); // [n·m, K]
    const tok = tf.matMul(oh, this.w('image.embed')).reshape([n, m, d]);
    const rows = this.rowSel.slice([0, 0], [m, -1]).matMul(this.w('image.row')); // [m, d]
    const cols = this.colSel.slice([0, 0], [m, -1]).matMul(this.w('image.col')); // [m, d]
    return tf.concat([start, tok.add(rows.add(cols))], 1) as tf.Tensor3D;
  }

  // ---- blocks ----------------------------------------------------------------------------------------

  /** Splits the fused projection q|k|v [n·S, 3d] into q, k and v by heads, each [n, H, S, dh]: one
   *  reshape, transpose and unstack (three kernels on native TensorFlow, not a slice and two per part). */
  private splitHeads(qkv: tf.Tensor, n: number, S: number): [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D] {
    const { heads: H, dh } = this.dims;
    return tf.unstack(qkv.reshape([n, S, 3, H, dh]).transpose([2, 0, 3, 1, 4])) as [
      tf.Tensor4D,
      tf.Tensor4D,
      tf.Tensor4D,
    ];
  }

  /** Attention of layer l over S positions: its output [n·S, d] and the fused projection q|k|v
   *  [n·S, 3d] (the KV cache takes k and v from it). */
  private attention(
    l: number,
    h: tf.Tensor2D,
    S: number,
    bias: tf.Tensor2D,
  ): { out: tf.Tensor2D; qkv: tf.Tensor2D } {
    const qkv = dense(h, this.w(`layer${l}.attn.qkv.w`), this.w(`layer${l}.attn.qkv.b`)); // [n·S, 3d]
    const merged = attention(qkv, bias, S, this.dims.heads); // [n·S, d]
    const out = dense(merged, this.w(`layer${l}.attn.proj.w`), this.w(`layer${l}.attn.proj.b`));
    return { out, qkv };
  }

  private mlp(l: number, h: tf.Tensor): tf.Tensor {
    const a = denseGelu(h as tf.Tensor2D, this.w(`layer${l}.mlp.fc.w`), this.w(`layer${l}.mlp.fc.b`));
    return dense(a, this.w(`layer${l}.mlp.proj.w`), this.w(`layer${l}.mlp.proj.b`));
  }

  /** All layers over x [n, S, d] (S ≤ T, positions 0..S−1): the final LN's output [n·S, d], and with
   *  `keepKv` each layer's K and V [n, H, S, dh] for a KV cache. */
  private trunk(x: tf.Tensor3D, keepKv = false): { h: tf.Tensor2D; k: tf.Tensor4D[]; v: tf.Tensor4D[] } {
    const [n, S, d] = x.shape;
    let r: tf.Tensor = x.reshape([n * S, d]); // residual stream [n·S, d]
    const ks: tf.Tensor4D[] = [];
    const vs: tf.Tensor4D[] = [];
    for (let l = 0; l < this.dims.layers; l++) {
      const bias = this.bias.get(this.kinds[l]!)!.slice([0, 0], [S, S]);
      const a = this.attention(
        l,
        layerNorm(r, this.w(`layer${l}.ln1.g`), this.w(`layer${l}.ln1.b`)) as tf.Tensor2D,
        S,
        bias,
      );
      r = r.add(a.out);
      r = r.add(this.mlp(l, layerNorm(r, this.w(`layer${l}.ln2.g`), this.w(`layer${l}.ln2.b`))));
      if (keepKv) {
        const [, k, v] = this.splitHeads(a.qkv, n, S);
        ks.push(k);
        vs.push(v);
      }
    }
    return { h: layerNorm(r, this.w('final.ln.g'), this.w('final.ln.b')) as tf.Tensor2D, k: ks, v: vs };
  }

  private textLogits(h: tf.Tensor2D): tf.Tensor2D {
    return this.dims.tied
      ? tf.matMul(h, this.w('text.embed'), false, true)
      : tf.matMul(h, this.w('text.unembed') as tf.Tensor2D);
  }

  private imageLogits(h: tf.Tensor2D): tf.Tensor2D {
    return this.dims.tied
      ? tf.matMul(h, this.w('image.embed'), false, true)
      : tf.matMul(h, this.w('image.unembed') as tf.Tensor2D);
  }

  // ---- whole-sequence forward (training, and the cache-free reference) --------------------------------

  /**
   * Logits of every prediction for n sequences: text [n, L−1, V] (position p predicts t_{p+1}) and image
   * [n, m+1, K] where m = image inputs given (position L + j predicts z_j). Training passes the first
   * N − 1 image tokens (m = N − 1); the cache-free sampler passes what it has generated so far.
   */
  logits(text: tf.Tensor2D, imageIn: tf.Tensor2D | null): { text: tf.Tensor3D; image: tf.Tensor3D } {
    return tf.tidy(() => {
      const { textLen: L, d, textVocab, imageVocab } = this.dims;
      const n = text.shape[0];
      const x = tf.concat([this.embedText(text), this.embedImage(imageIn, n)], 1) as tf.Tensor3D; // [n, S, d]
      const S = x.shape[1];
      const h = this.trunk(x).h.reshape([n, S, d]);
      const hi = h.slice([0, L, 0], [n, S - L, d]).reshape([n * (S - L), d]) as tf.Tensor2D;
      const ht = L > 1 ? (h.slice([0, 0, 0], [n, L - 1, d]).reshape([n * (L - 1), d]) as tf.Tensor2D) : null;
      return {
        text: (ht
          ? this.textLogits(ht).reshape([n, L - 1, textVocab])
          : tf.zeros([n, 0, textVocab])) as tf.Tensor3D,
        image: this.imageLogits(hi).reshape([n, S - L, imageVocab]) as tf.Tensor3D,
      };
    });
  }

  /** The weighted loss and its two parts, as scalars (differentiable w.r.t. the parameter tensors). */
  losses(
    text: tf.Tensor2D,
    image: tf.Tensor2D,
  ): { loss: tf.Scalar; textLoss: tf.Scalar; imageLoss: tf.Scalar } {
    return tf.tidy(() => {
      const { textLen: L, imageLen: N, textVocab, imageVocab } = this.dims;
      const n = text.shape[0];
      const imageIn = N > 1 ? image.slice([0, 0], [n, N - 1]) : null;
      const lg = this.logits(text, imageIn);
      const ce = (logits: tf.Tensor3D, targets: tf.Tensor2D, vocab: number, count: number): tf.Scalar => {
        if (count === 0) return tf.scalar(0);
        const perToken = softmaxCrossEntropy(logits.reshape([count, vocab]), targets.reshape([count]));
        return perToken.sum().div(count) as tf.Scalar;
      };
      const textLoss =
        L > 1 ? ce(lg.text, text.slice([0, 1], [n, L - 1]), textVocab, n * (L - 1)) : tf.scalar(0);
      const imageLoss = ce(lg.image, image, imageVocab, n * N);
      const loss = textLoss
        .mul(this.cfg.textLossWeight)
        .add(imageLoss.mul(this.cfg.imageLossWeight)) as tf.Scalar;
      return { loss, textLoss, imageLoss };
    });
  }

  // ---- KV-cache inference ---------------------------------------------------------------------------

  /** Runs the text and start-of-image positions (0..L) of R rows; returns the cache and the logits
   *  [R, K] of image token z_0. */
  prefill(text: Int32Array, rows: number): { cache: KvCache; logits: tf.Tensor2D } {
    this.checkTokens(text, rows);
    return tf.tidy(() => {
      const { textLen: L, d } = this.dims;
      const t = tf.tensor2d(text, [rows, L], 'int32');
      const x = tf.concat([this.embedText(t), this.embedImage(null, rows)], 1) as tf.Tensor3D; // [R, L+1, d]
      const out = this.trunk(x, true);
      const last = out.h
        .reshape([rows, L + 1, d])
        .slice([0, L, 0], [rows, 1, d])
        .reshape([rows, d]) as tf.Tensor2D;
      return { cache: { k: out.k, v: out.v, length: L + 1 }, logits: this.imageLogits(last) };
    });
  }

  /**
   * Feeds image token z_{j} (j = cache.length − L − 1, the same cell for every row) at position
   * cache.length and returns the grown cache and the logits [R, K] of z_{j+1}. The caller disposes the
   * old cache (see `disposeCache`).
   */
  decode(cache: KvCache, tokens: Int32Array): { cache: KvCache; logits: tf.Tensor2D } {
    const { textLen: L, imageLen: N, imageVocab, grid, d, layers } = this.dims;
    const pos = cache.length;
    const j = pos - L - 1; // cell of the token fed now
    if (j < 0 || j >= N - 1)
      throw new TokenInputError('cache', `position ${pos} has no image token to feed (cells 0..${N - 2})`);
    const R = tokens.length;
    if (cache.k[0]!.shape[0] !== R)
      throw new TokenInputError('tokens', `${R} tokens for a cache of ${cache.k[0]!.shape[0]} rows`);
    for (let i = 0; i < R; i++) {
      if (!(tokens[i]! >= 0 && tokens[i]! < imageVocab))
        throw new TokenInputError('tokens', `id ${tokens[i]} at ${i} is outside [0, ${imageVocab})`);
    }
    return tf.tidy(() => {
      const oh = oneHot(tf.tensor1d(tokens, 'int32'), imageVocab); // [R, K]
      const cell = this.w('image.row')
        .slice([Math.floor(j / grid), 0], [1, d])
        .add(this.w('image.col').slice([j % grid, 0], [1, d]));
      let r: tf.Tensor = tf.matMul(oh, this.w('image.embed')).add(cell); // [R, d]
      const ks: tf.Tensor4D[] = [];
      const vs: tf.Tensor4D[] = [];
      for (let l = 0; l < layers; l++) {
        const h = layerNorm(r, this.w(`layer${l}.ln1.g`), this.w(`layer${l}.ln1.b`)) as tf.Tensor2D;
        const qkv = dense(h, this.w(`layer${l}.attn.qkv.w`), this.w(`layer${l}.attn.qkv.b`)); // [R, 3d]
        const [qNew, kNew, vNew] = this.splitHeads(qkv, R, 1); // each [R, H, 1, dh]
        // q scaled before the product, as the training attention does (same rounding)
        const q = qNew.mul(1 / Math.sqrt(this.dims.dh));
        const k = tf.concat([cache.k[l]!, kNew], 2) as tf.Tensor4D; // [R, H, pos+1, dh]
        const v = tf.concat([cache.v[l]!, vNew], 2) as tf.Tensor4D;
        const bias = this.bias.get(this.kinds[l]!)!.slice([pos, 0], [1, pos + 1]); // [1, pos+1]: this position's mask row
        const scores = tf.matMul(q, k, false, true).add(bias); // [R, H, 1, pos+1]
        const y = tf.matMul(tf.softmax(scores), v).transpose([0, 2, 1, 3]).reshape([R, d]) as tf.Tensor2D;
        r = r.add(dense(y, this.w(`layer${l}.attn.proj.w`), this.w(`layer${l}.attn.proj.b`)));
        r = r.add(this.mlp(l, layerNorm(r, this.w(`layer${l}.ln2.g`), this.w(`layer${l}.ln2.b`))));
        ks.push(k);
        vs.push(v);
      }
      const hf = layerNorm(r, this.w('final.ln.g'), this.w('final.ln.b')) as tf.Tensor2D;
      return { cache: { k: ks, v: vs, length: pos + 1 }, logits: this.imageLogits(hf) };
    });
  }

  /** Keeps only `keep` rows of a cache (ascending indices); returns a new cache, the old one untouched. */
  selectRows(cache: KvCache, keep: number[]): KvCache {
    return tf.tidy(() => {
      const idx = tf.tensor1d(keep, 'int32');
      return {
        k: cache.k.map((t) => tf.gather(t, idx) as tf.Tensor4D),
        v: cache.v.map((t) => tf.gather(t, idx) as tf.Tensor4D),
        length: cache.length,
      };
    });
  }

  /** Releases every tensor this model owns (its parameters only when built by `fromArrays`). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    tf.dispose(this.owned);
  }
}

export function disposeCache(cache: KvCache): void {
  tf.dispose([...cache.k, ...cache.v]);
}
