// Stage 1 of DALL-E: the discrete VAE (docs/model.md; layout as in openai/DALL-E's dall_e/encoder.py and
// decoder.py). Reads top-down: config checks → parameter layout → blocks → encoder → decoder → loss →
// the Dvae class with encode/decode for the sampler and encodeDataset.
//
// Encoder: 7×7 conv → G groups of B bottleneck resblocks (width 2^g·n_hid), 2×2 max-pool after every
//   group but the last → ReLU → 1×1 conv to K logits per grid cell.           [N,R,R,3] → [N,g,g,K]
// Decoder: 1×1 conv K → n_init → G groups (width 2^(G−1−g)·n_hid), ×2 nearest upsampling after every
//   group but the last → ReLU → 1×1 conv to 6 channels (μ, ln b per RGB).      [N,g,g,K] → [N,R,R,6]
// Resblock: x ↦ id(x) + (1/n_layers²)·res(x), n_layers = G·B; res is ReLU-conv ×4 with width n_out/4
//   (encoder kernels 3,3,3,1; decoder 1,3,3,3); id is a 1×1 conv when the width changes.
// n_init = n_hid/2 (the official 128 for n_hid 256). Weights ~ N(0, 1/(n_in·k²)), biases 0.
// Beyond the paper (config, off by default): learned resampling (downsample 'conv', upsample 'shuffle' or
//   'transpose'), no resblocks at full resolution (fullResolutionBlocks false), the residual gain
//   (resblockGain), and the quantizers 'vq' and 'continuous' (a diagnostic with no discretisation).
// The encoder sees φ(x) as in the official code, or 2φ(x)−1 with config centerInput (see config/spec.ts).
import * as tf from '@tensorflow/tfjs';
import type { DvaeConfig } from '../config/index.ts';
import { gumbelNoise, gumbelSoftmax, klToUniform } from './gumbel.ts';
import { logitLaplaceNll, mapPixels, reconstruction } from './logit-laplace.ts';
import { conv2dBias } from './ops/conv.ts';
import { relu } from './ops/relu.ts';
import { upsample2x } from './ops/upsample.ts';
import { RngStream, normals } from '../random/index.ts';
import type { ParamSpec } from './trainer.ts';

/** A DvaeConfig that cannot build a network (the message names the field and the rule). */
export class DvaeConfigError extends Error {
  override name = 'DvaeConfigError';
  readonly fatal = true;
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`dvae.${field} = ${String(value)}: ${rule}`);
  }
}

/** Images or tokens handed to encode/decode do not fit the model. */
export class DvaeInputError extends Error {
  override name = 'DvaeInputError';
  constructor(
    readonly what: string,
    readonly problem: string,
  ) {
    super(`dvae ${what}: ${problem}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Shape of the network, derived from config only (no tensors).

interface ConvSpec {
  name: string;
  k: number;
  nIn: number;
  nOut: number;
  /** How PowerSGD and weight decay treat the kernel (its bias is always 'bias'). */
  kind: ParamSpec['kind'];
}

interface BlockSpec {
  prefix: string;
  nIn: number;
  nOut: number;
  id?: ConvSpec;
  convs: ConvSpec[];
}

interface GroupSpec {
  blocks: BlockSpec[];
  /** Encoder: max-pool after; decoder: upsample after. */
  resample: boolean;
  /** Decoder with config upsample 'shuffle': the 1×1 conv C → 4C whose four slices become the four
   *  pixels of each 2×2 block (pixel shuffle), in place of nearest-neighbour upsampling. */
  shuffle?: ConvSpec;
  /** Decoder with config upsample 'transpose': a 4×4 transposed conv C → C with stride 2. */
  transpose?: ConvSpec;
  /** Encoder with config downsample 'conv': a 4×4 conv C → C with stride 2, in place of the max-pool. */
  down?: ConvSpec;
}

export interface DvaeLayout {
  resolution: number;
  /** Encoder sees 2φ(x)−1 rather than φ(x) (config centerInput). */
  centerInput: boolean;
  /** Decoder trains on the hard argmax of the relaxed sample (config straightThrough). */
  straightThrough: boolean;
  /** Weight of the codebook-diversity term (config diversityWeight). */
  diversityWeight: number;
  /** Cosine logits with this scale, or 0 for the plain output convolution (config codeLogitScale). */
  codeLogitScale: number;
  /** ln of the smallest logit-Laplace scale, or −∞ for none (config logitLaplaceMinScale). */
  minLnB: number;
  /** ln of the largest logit-Laplace scale, or +∞ for none (config logitLaplaceMaxScale). */
  maxLnB: number;
  /** How cells become codes (config quantizer): 'gumbel' (the paper), 'vq' (nearest codebook vector) or
   *  'continuous' (softmax(logits), no noise: a diagnostic autoencoder). */
  quantizer: DvaeConfig['quantizer'];
  /** vq: weight of the commitment term (config commitmentWeight). */
  commitment: number;
  /** Extra weight of the pixels next to an edge in the reconstruction term (config edgeWeight). */
  edgeWeight: number;
  /** Weight of the per-cell colour term and its 1×1 head from the code to the cell's mean colour (config
   *  cellColorWeight; absent when 0). */
  cellColor?: { weight: number; head: ConvSpec };
  grid: number;
  codebookSize: number;
  nLayers: number;
  postGain: number;
  nInit: number;
  encoder: { input: ConvSpec; groups: GroupSpec[]; output: ConvSpec };
  decoder: { input: ConvSpec; groups: GroupSpec[]; output: ConvSpec };
}

export function checkDvaeConfig(cfg: DvaeConfig): void {
  const posInt = (f: keyof DvaeConfig) => {
    const v = cfg[f];
    if (!(Number.isInteger(v) && (v as number) > 0))
      throw new DvaeConfigError(f, v, 'must be a positive integer');
  };
  (['resolution', 'grid', 'codebookSize', 'hidden', 'groups', 'blocksPerGroup'] as const).forEach(posInt);
  if (cfg.hidden % 4 !== 0)
    throw new DvaeConfigError('hidden', cfg.hidden, 'must be a multiple of 4 (bottleneck width is n_out/4)');
  if (cfg.codebookSize < 2) throw new DvaeConfigError('codebookSize', cfg.codebookSize, 'must be at least 2');
  const factor = 2 ** (cfg.groups - 1);
  if (cfg.resolution % factor !== 0 || cfg.resolution / factor !== cfg.grid) {
    throw new DvaeConfigError(
      'grid',
      cfg.grid,
      `must equal resolution / 2^(groups−1) = ${cfg.resolution / factor}`,
    );
  }
  if (!(cfg.logitLaplaceEps > 0 && cfg.logitLaplaceEps < 0.5)) {
    throw new DvaeConfigError('logitLaplaceEps', cfg.logitLaplaceEps, 'must be in (0, 0.5)');
  }
  if ((cfg.cellColorWeight ?? 0) > 0 && cfg.quantizer === 'vq')
    throw new DvaeConfigError(
      'cellColorWeight',
      cfg.cellColorWeight,
      'needs the gumbel or continuous quantizer',
    );
  if ((cfg.codeRestartEvery ?? 0) > 0 && !cfg.straightThrough && cfg.quantizer !== 'vq') {
    throw new DvaeConfigError(
      'codeRestartEvery',
      cfg.codeRestartEvery,
      'needs straightThrough: true or quantizer: vq (code usage is read from the gradient of one-hot codes)',
    );
  }
}

function conv(
  name: string,
  k: number,
  nIn: number,
  nOut: number,
  kind: ParamSpec['kind'] = 'matrix',
): ConvSpec {
  return { name, k, nIn, nOut, kind };
}

function block(prefix: string, nIn: number, nOut: number, kernels: number[]): BlockSpec {
  const nHid = nOut / 4;
  const widths = [nIn, nHid, nHid, nHid, nOut];
  return {
    prefix,
    nIn,
    nOut,
    id: nIn !== nOut ? conv(`${prefix}.id`, 1, nIn, nOut) : undefined,
    convs: kernels.map((k, i) => conv(`${prefix}.conv${i + 1}`, k, widths[i]!, widths[i + 1]!)),
  };
}

/** The network's layout for `cfg` (throws DvaeConfigError when it cannot be built). */
export function dvaeLayout(cfg: DvaeConfig): DvaeLayout {
  checkDvaeConfig(cfg);
  const G = cfg.groups;
  const B = cfg.blocksPerGroup;
  const h = cfg.hidden;
  const K = cfg.codebookSize;
  const nInit = Math.max(1, Math.round(h / 2));
  const encWidth = (g: number) => 2 ** g * h;
  const decWidth = (g: number) => 2 ** (G - 1 - g) * h;
  const encoder = groupSpecs('encoder', cfg, encWidth, h, [3, 3, 3, 1]);
  const decoder = groupSpecs('decoder', cfg, decWidth, nInit, [1, 3, 3, 3]);
  return {
    resolution: cfg.resolution,
    centerInput: cfg.centerInput ?? false,
    edgeWeight: cfg.edgeWeight ?? 0,
    cellColor:
      (cfg.cellColorWeight ?? 0) > 0
        ? { weight: cfg.cellColorWeight!, head: conv('decoder.cellColor', 1, K, 3) }
        : undefined,
    straightThrough: cfg.straightThrough ?? false,
    diversityWeight: cfg.diversityWeight ?? 0,
    codeLogitScale: cfg.codeLogitScale ?? 0,
    minLnB: cfg.logitLaplaceMinScale ? Math.log(cfg.logitLaplaceMinScale) : -Infinity,
    maxLnB: cfg.logitLaplaceMaxScale ? Math.log(cfg.logitLaplaceMaxScale) : Infinity,
    quantizer: cfg.quantizer ?? 'gumbel',
    commitment: cfg.commitmentWeight ?? 0.25,
    grid: cfg.grid,
    codebookSize: K,
    nLayers: G * B,
    postGain: (cfg.resblockGain ?? 0) > 0 ? cfg.resblockGain! : 1 / (G * B) ** 2,
    nInit,
    encoder: {
      input: conv('encoder.input', 7, 3, h),
      groups: encoder.groups,
      // Gumbel: maps to the K logits, treated like an unembedding (fp32, uncompressed, no decay).
      // VQ: maps to a vector in the codebook's space (n_init wide), compared with every code.
      output:
        (cfg.quantizer ?? 'gumbel') === 'vq'
          ? conv('encoder.output', 1, encoder.width, nInit)
          : conv('encoder.output', 1, encoder.width, K, 'unembedding'),
    },
    decoder: {
      // Its rows are the codebook vectors e_i: treated like an embedding.
      input: conv('decoder.input', 1, K, nInit, 'embedding'),
      groups: decoder.groups,
      output: conv('decoder.output', 1, decoder.width, 6),
    },
  };
}

/** One side's groups: group g's blocks take the running width to width(g) (none in a full-resolution group
 *  when config fullResolutionBlocks is false), then the resampling op (learned ones keep the width).
 *  Returns the groups and the width they end with. */
function groupSpecs(
  side: 'encoder' | 'decoder',
  cfg: DvaeConfig,
  width: (g: number) => number,
  first: number,
  kernels: number[],
): { groups: GroupSpec[]; width: number } {
  const G = cfg.groups;
  const fullRes = side === 'encoder' ? 0 : G - 1;
  const up = cfg.upsample ?? 'nearest';
  let cur = first;
  const groups = Array.from({ length: G }, (_, g): GroupSpec => {
    const nBlocks = g === fullRes && cfg.fullResolutionBlocks === false ? 0 : cfg.blocksPerGroup;
    const blocks = Array.from({ length: nBlocks }, (_, i) =>
      block(`${side}.group${g}.block${i}`, i > 0 ? width(g) : cur, width(g), kernels),
    );
    if (nBlocks > 0) cur = width(g);
    const resample = g < G - 1;
    const name = `${side}.group${g}`;
    if (!resample) return { blocks, resample };
    if (side === 'encoder')
      return cfg.downsample === 'conv'
        ? { blocks, resample, down: conv(`${name}.downsample`, 4, cur, cur) }
        : { blocks, resample };
    if (up === 'shuffle') return { blocks, resample, shuffle: conv(`${name}.upsample`, 1, cur, 4 * cur) };
    if (up === 'transpose') return { blocks, resample, transpose: conv(`${name}.transpose`, 4, cur, cur) };
    return { blocks, resample };
  });
  return { groups, width: cur };
}

/** The learned resampling convs of a group (none, or one of shuffle / transpose / down). */
function resampleConvs(g: GroupSpec): ConvSpec[] {
  return [g.shuffle, g.transpose, g.down].filter((c): c is ConvSpec => c !== undefined);
}

function allConvs(l: DvaeLayout): ConvSpec[] {
  const ofGroups = (gs: GroupSpec[]) =>
    gs.flatMap((g) => [
      ...g.blocks.flatMap((b) => [...(b.id ? [b.id] : []), ...b.convs]),
      ...resampleConvs(g),
    ]);
  return [
    l.encoder.input,
    ...ofGroups(l.encoder.groups),
    l.encoder.output,
    l.decoder.input,
    ...ofGroups(l.decoder.groups),
    l.decoder.output,
    ...(l.cellColor ? [l.cellColor.head] : []),
  ];
}

/** Parameters in their fixed order (the order of grads, saved state and exported arrays). */
export function dvaeParamSpecs(cfg: DvaeConfig): ParamSpec[] {
  return allConvs(dvaeLayout(cfg)).flatMap((c) => [
    { name: `${c.name}.w`, shape: [c.k, c.k, c.nIn, c.nOut], kind: c.kind },
    { name: `${c.name}.b`, shape: [c.nOut], kind: 'bias' as const },
  ]);
}

/** Number of trainable parameters (encoder + decoder), computed from the config alone. */
export function dvaeParameterCount(cfg: DvaeConfig): number {
  return allConvs(dvaeLayout(cfg)).reduce((s, c) => s + c.k * c.k * c.nIn * c.nOut + c.nOut, 0);
}

/** Multiply-accumulates of one image through encoder and decoder (forward only), for FLOP figures. */
export function dvaeForwardMacs(cfg: DvaeConfig): number {
  const l = dvaeLayout(cfg);
  let macs = 0;
  const at = (c: ConvSpec, side: number) => (macs += side * side * c.k * c.k * c.nIn * c.nOut);
  let side = l.resolution;
  at(l.encoder.input, side);
  for (const g of l.encoder.groups) {
    for (const b of g.blocks) [...(b.id ? [b.id] : []), ...b.convs].forEach((c) => at(c, side));
    if (g.resample) side /= 2;
    if (g.down) at(g.down, side); // stride 2: one k×k window per output pixel
  }
  at(l.encoder.output, side);
  at(l.decoder.input, side);
  for (const g of l.decoder.groups) {
    for (const b of g.blocks) [...(b.id ? [b.id] : []), ...b.convs].forEach((c) => at(c, side));
    if (g.shuffle) at(g.shuffle, side);
    if (g.resample) side *= 2;
    if (g.transpose)
      macs += (side * side * g.transpose.k * g.transpose.k * g.transpose.nIn * g.transpose.nOut) / 4;
  }
  at(l.decoder.output, side);
  return macs;
}

/** Initial parameter values: N(0, 1/(n_in·k²)) kernels (the codebook N(0, codebookInitStd²) when set),
 *  zero biases; a pure function of `seed`. */
export function initDvaeParams(cfg: DvaeConfig, seed: number): Float32Array[] {
  return dvaeParamSpecs(cfg).map((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.shape.length === 1) return new Float32Array(n);
    const [k, , nIn, nOut] = s.shape as [number, number, number, number];
    // A pixel-shuffle conv starts as nearest-neighbour upsampling: every input channel copied to its
    // four sub-positions.
    if (s.name.endsWith('.upsample.w')) {
      const w = new Float32Array(n);
      for (let c = 0; c < nIn; c++) for (let q = 0; q < 4; q++) w[c * nOut + q * nIn + c] = 1;
      return w;
    }
    // The codebook (decoder.input's rows) may start as an embedding table does, N(0, σ²).
    const codebook = s.name === 'decoder.input.w' && (cfg.codebookInitStd ?? 0) > 0;
    // A stride-2 transposed conv feeds each output pixel (k/2)² of its k² taps: that is its fan-in.
    const fanIn = s.name.endsWith('.transpose.w') ? (nIn * k * k) / 4 : nIn * k * k;
    const std = codebook ? cfg.codebookInitStd : 1 / Math.sqrt(fanIn);
    const z = normals({ seed, stream: RngStream.init, step: i, rank: 0 }, n);
    for (let j = 0; j < n; j++) z[j]! *= std;
    return z;
  });
}

// ---------------------------------------------------------------------------------------------------
// Forward pass. `p` maps a parameter name to its tensor.

type Params = Map<string, tf.Tensor>;

function applyConv(
  p: Params,
  c: ConvSpec,
  x: tf.Tensor4D,
  activation: 'linear' | 'relu' = 'linear',
): tf.Tensor4D {
  return conv2dBias(x, p.get(`${c.name}.w`) as tf.Tensor4D, p.get(`${c.name}.b`)!, activation);
}

/** id(x) + postGain · conv4(relu(conv3(relu(conv2(relu(conv1(relu(x)))))))) */
function resblock(p: Params, b: BlockSpec, x: tf.Tensor4D, postGain: number): tf.Tensor4D {
  const id = b.id ? applyConv(p, b.id, x) : x;
  let r = relu(x);
  // The ReLU before conv 2..4 is fused into the previous conv's output.
  r = applyConv(p, b.convs[0]!, r, 'relu');
  r = applyConv(p, b.convs[1]!, r, 'relu');
  r = applyConv(p, b.convs[2]!, r, 'relu');
  r = applyConv(p, b.convs[3]!, r);
  return id.add(r.mul(postGain));
}

/** φ-mapped pixels [N, R, R, 3] → logits [N, g, g, K] (centred first when the config says so); with the
 *  VQ quantizer the logits are minus the squared distance to each code, so argmax is the nearest code. */
function encoderForward(p: Params, l: DvaeLayout, x: tf.Tensor4D): tf.Tensor4D {
  const h = encoderTrunk(p, l, x);
  if (l.quantizer === 'vq') {
    const ze = applyConv(p, l.encoder.output, h); // [N, g, g, D]
    const [n, g] = ze.shape;
    return vqDistances(p, l, ze.reshape([-1, l.nInit]) as tf.Tensor2D)
      .neg()
      .reshape([n, g, g, l.codebookSize]) as tf.Tensor4D;
  }
  return gumbelLogits(p, l, h);
}

/** The Gumbel quantizer's logits [N, g, g, K] of encoder features [N, g, g, C]: the output conv, or cosine
 *  logits (codeLogitScale). */
function gumbelLogits(p: Params, l: DvaeLayout, h: tf.Tensor4D): tf.Tensor4D {
  return l.codeLogitScale === 0 ? applyConv(p, l.encoder.output, h) : cosineLogits(p, l, h);
}

/** The codebook [K, D]: decoder.input's kernel (one-hot codes through a 1×1 conv pick its rows). */
function codebook(p: Params, l: DvaeLayout): tf.Tensor2D {
  return (p.get(`${l.decoder.input.name}.w`) as tf.Tensor).reshape([l.codebookSize, l.nInit]) as tf.Tensor2D;
}

/** ‖z − e_k‖² for every row z of [M, D] and code k: [M, K]. */
function vqDistances(p: Params, l: DvaeLayout, z: tf.Tensor2D): tf.Tensor2D {
  const e = codebook(p, l);
  return z
    .square()
    .sum(1, true)
    .sub(tf.matMul(z, e, false, true).mul(2))
    .add(e.square().sum(1).expandDims(0)) as tf.Tensor2D;
}

/** The encoder up to its output conv: ReLU'd features [N, g, g, C]. */
function encoderTrunk(p: Params, l: DvaeLayout, x: tf.Tensor4D): tf.Tensor4D {
  if (l.centerInput) x = x.mul(2).sub(1) as tf.Tensor4D; // [ε, 1−ε] → [2ε−1, 1−2ε]
  // The images need no gradient: conv2dBias computes ∂/∂x only for inputs on the path to a variable.
  let h = applyConv(p, l.encoder.input, x); // [N, R, R, n_hid]
  for (const g of l.encoder.groups) {
    for (const b of g.blocks) h = resblock(p, b, h, l.postGain);
    if (g.down)
      h = stridedConv(p, g.down, h); // [N, side/2, side/2, C]
    else if (g.resample) h = tf.maxPool(h, 2, 2, 'valid');
  }
  return relu(h);
}

/** s · cos(features, code weights) + bias, per cell and code: [N, g, g, C] → [N, g, g, K]. */
function cosineLogits(p: Params, l: DvaeLayout, h: tf.Tensor4D): tf.Tensor4D {
  const w = p.get(`${l.encoder.output.name}.w`) as tf.Tensor4D; // [1, 1, C, K]
  const unit = (t: tf.Tensor, axis: number) => t.div(t.square().sum(axis, true).add(1e-12).sqrt());
  const filter = unit(w, 2).mul(l.codeLogitScale) as tf.Tensor4D;
  return tf.conv2d(unit(h, 3) as tf.Tensor4D, filter, 1, 'same').add(p.get(`${l.encoder.output.name}.b`)!);
}

interface DecoderHeads {
  /** Location μ of the logit-Laplace, per RGB channel [N, R, R, 3]. */
  mu: tf.Tensor4D;
  /** ln b, per RGB channel [N, R, R, 3]. */
  lnB: tf.Tensor4D;
}

/** Soft or one-hot codes [N, g, g, K] → μ and ln b, each [N, R, R, 3]. */
function decoderForward(p: Params, l: DvaeLayout, z: tf.Tensor4D): DecoderHeads {
  return decoderFromEmbedded(p, l, applyConv(p, l.decoder.input, z));
}

/** Same, from codes already embedded by decoder.input: [N, g, g, n_init] → heads [N, R, R, 3]. */
function decoderFromEmbedded(p: Params, l: DvaeLayout, e: tf.Tensor4D): DecoderHeads {
  let h = e;
  for (const g of l.decoder.groups) {
    for (const b of g.blocks) h = resblock(p, b, h, l.postGain);
    if (g.shuffle)
      h = pixelShuffle(applyConv(p, g.shuffle, h)); // [N, 2·side, 2·side, C]
    else if (g.transpose) h = transposedConv(p, g.transpose, h);
    else if (g.resample) h = upsample2x(h);
  }
  h = relu(h);
  // The 6-channel output conv, run as its μ half and its ln b half: slicing the [1, 1, C, 6] kernel is
  // cheap, slicing the [N, R, R, 6] activations (and padding their gradient back) is not.
  const w = p.get(`${l.decoder.output.name}.w`) as tf.Tensor4D;
  const b = p.get(`${l.decoder.output.name}.b`)!;
  const c = w.shape[2];
  const half = (from: number) => conv2dBias(h, w.slice([0, 0, 0, from], [1, 1, c, 3]), b.slice([from], [3]));
  return { mu: half(0), lnB: half(3) };
}

/** k×k conv with stride 2, 'same' padding (1 on each side for k = 4, as dalle-pytorch's): [N, H, W, C] →
 *  [N, H/2, W/2, C']. */
function stridedConv(p: Params, c: ConvSpec, x: tf.Tensor4D): tf.Tensor4D {
  return tf.conv2d(x, p.get(`${c.name}.w`) as tf.Tensor4D, 2, 'same').add(p.get(`${c.name}.b`)!);
}

/** k×k transposed conv with stride 2: [N, H, W, C] → [N, 2H, 2W, C] (the kernel is square in C). */
function transposedConv(p: Params, c: ConvSpec, x: tf.Tensor4D): tf.Tensor4D {
  const [n, hh, ww] = x.shape;
  const w = p.get(`${c.name}.w`) as tf.Tensor4D;
  return tf.conv2dTranspose(x, w, [n, 2 * hh, 2 * ww, c.nOut], 2, 'same').add(p.get(`${c.name}.b`)!);
}

/** [N, H, W, 4C] → [N, 2H, 2W, C]: channel slice q = 2·dy + dx becomes pixel (2y + dy, 2x + dx). */
function pixelShuffle(x: tf.Tensor4D): tf.Tensor4D {
  const [n, hh, ww, c4] = x.shape;
  const c = c4 / 4;
  return x
    .reshape([n, hh, ww, 2, 2, c])
    .transpose([0, 1, 3, 2, 4, 5])
    .reshape([n, 2 * hh, 2 * ww, c]) as tf.Tensor4D;
}

// ---------------------------------------------------------------------------------------------------
// Loss (docs/model.md): negative ELBO per image, normalized by R·R·3, averaged over the batch:
//   [ Σ_pixels −log f(φ(x) | μ, b)  +  β · Σ_cells KL(q(z|x) ‖ uniform) ] / (R·R·3)

export interface DvaeLossTerms {
  /** The training objective (scalar). */
  loss: tf.Scalar;
  /** Reconstruction NLL per pixel-channel, nats (scalar). */
  recon: tf.Scalar;
  /** KL(q ‖ uniform) per grid cell, nats (scalar). */
  kl: tf.Scalar;
  /** Mean squared error of φ⁻¹(sigmoid(μ)) against the input, both in [0, 1] (scalar). */
  mse: tf.Scalar;
  /** argmax code of every cell [N, g, g] (int32), e.g. for codebook usage. */
  codes: tf.Tensor3D;
}

/** What the decoder sees in training: the Gumbel-softmax sample at τ, or for the continuous diagnostic
 *  softmax(logits) without noise (bounded: the raw logits diverge under the logit-Laplace). */
function relaxed(l: DvaeLayout, logits: tf.Tensor4D, noise: tf.Tensor, tau: number): tf.Tensor4D {
  return (
    l.quantizer === 'continuous' ? tf.softmax(logits) : gumbelSoftmax(logits, noise, tau)
  ) as tf.Tensor4D;
}

/** Loss terms for a batch of uint8-valued images [N, R, R, 3] (as float) with Gumbel noise [N, g, g, K]. */
function lossTerms(
  p: Params,
  l: DvaeLayout,
  eps: number,
  x255: tf.Tensor4D,
  noise: tf.Tensor,
  tau: number,
  beta: number,
): DvaeLossTerms {
  const x = mapPixels(x255, eps) as tf.Tensor4D; // [N, R, R, 3] in [ε, 1−ε]
  if (l.quantizer === 'vq') return vqLossTerms(p, l, eps, x255, x);
  const logits = encoderForward(p, l, x); // [N, g, g, K]
  const continuous = l.quantizer === 'continuous';
  const soft = relaxed(l, logits, noise, tau); // [N, g, g, K]
  const z = l.straightThrough && !continuous ? straightThrough(soft) : soft;
  const { mu, lnB } = decoderForward(p, l, z); // [N, R, R, 3] each
  const [n, r] = mu.shape;
  const perPixelChannel = r * r * 3;
  const cells = l.grid * l.grid;
  const { nllSum, fit } = reconstructionTerms(l, x, mu, lnB);
  const klSum = continuous ? tf.scalar(0) : klToUniform(logits).sum().div(n); // Σ over cells, mean over batch
  let loss = fit.add(klSum.mul(beta)).div(perPixelChannel) as tf.Scalar;
  if (l.diversityWeight > 0) loss = loss.add(codebookDivergence(logits).mul(l.diversityWeight));
  if (l.cellColor) loss = loss.add(cellColorError(p, l.cellColor.head, z, x).mul(l.cellColor.weight));
  const mse = tf.tidy(() => reconstruction(mu, eps).sub(x255.div(255)).square().mean()) as tf.Scalar;
  const codes = logits.argMax(-1) as tf.Tensor3D;
  return {
    loss,
    recon: nllSum.div(perPixelChannel) as tf.Scalar,
    kl: klSum.div(cells) as tf.Scalar,
    mse,
    codes,
  };
}

/** Mean squared error of each cell's colour as its code alone predicts it (a 1×1 head on the relaxed
 *  sample z [N, g, g, K]) against the cell's mean pixel x [N, R, R, 3]. The decoder can draw a cell's
 *  colour from its neighbours' codes, so nothing else stops two colours from sharing one interior code (on
 *  `shapes`, yellow's and orange's did), which leaves the transformer to choose the colour through the
 *  rarer edge codes; this term makes each code carry its cell's colour. */
function cellColorError(p: Params, head: ConvSpec, z: tf.Tensor4D, x: tf.Tensor4D): tf.Scalar {
  const cell = x.shape[1] / z.shape[1];
  const target = tf.avgPool(x, cell, cell, 'valid'); // [N, g, g, 3]
  return applyConv(p, head, z).sub(target).square().mean() as tf.Scalar;
}

/** The loss terms with the parameters given as tensors in `dvaeParamSpecs(cfg)` order (a trainer's
 *  flat parameter vector, split for this step). */
export function dvaeLossTerms(
  cfg: DvaeConfig,
  layout: DvaeLayout,
  params: readonly tf.Tensor[],
  x255: tf.Tensor4D,
  noise: tf.Tensor,
  tau: number,
  beta: number,
): DvaeLossTerms {
  const specs = dvaeParamSpecs(cfg);
  const p: Params = new Map(specs.map((s, i) => [s.name, params[i]!]));
  return lossTerms(p, layout, cfg.logitLaplaceEps, x255, noise, tau, beta);
}

/** Each cell's argmax code [n·g²] and encoder features [n·g², C] (the input of the logits conv) for
 *  images uint8 [n, R, R, 3], the parameters given as in `dvaeLossTerms`: what codebook splitting
 *  (model/code-split.ts) reads. No Gumbel noise; `chunk` images at a time. */
export function encoderFeatures(
  cfg: DvaeConfig,
  layout: DvaeLayout,
  params: readonly tf.Tensor[],
  images: Uint8Array,
  chunk = 32,
): { codes: Int32Array; features: Float32Array } {
  const R = cfg.resolution;
  const per = R * R * 3;
  const n = countOf(images, per, 'images', `uint8 [n, ${R}, ${R}, 3]`);
  const specs = dvaeParamSpecs(cfg);
  const p: Params = new Map(specs.map((s, i) => [s.name, params[i]!]));
  const cells = cfg.grid * cfg.grid;
  const codes = new Int32Array(n * cells);
  let features = new Float32Array(0);
  for (let i0 = 0; i0 < n; i0 += chunk) {
    const m = Math.min(chunk, n - i0);
    const [h, k] = tf.tidy(() => {
      const x255 = tf.tensor4d(images.subarray(i0 * per, (i0 + m) * per), [m, R, R, 3], 'int32').toFloat();
      const h = encoderTrunk(p, layout, mapPixels(x255, cfg.logitLaplaceEps) as tf.Tensor4D);
      return [h, gumbelLogits(p, layout, h).argMax(-1)];
    });
    try {
      const C = h.shape.at(-1)!;
      if (i0 === 0) features = new Float32Array(n * cells * C);
      features.set(h.dataSync() as Float32Array, i0 * cells * C);
      codes.set(k.dataSync() as Int32Array, i0 * cells);
    } finally {
      tf.dispose([h, k]);
    }
  }
  return { codes, features };
}

/** The reconstruction NLL summed over pixels and averaged over the batch (`nllSum`), and the same with the
 *  edge weights the loss uses (`fit`; the same tensor when edgeWeight is 0). */
function reconstructionTerms(
  l: DvaeLayout,
  x: tf.Tensor4D,
  mu: tf.Tensor4D,
  lnB: tf.Tensor4D,
): { nllSum: tf.Tensor; fit: tf.Tensor } {
  const n = x.shape[0];
  const nll = logitLaplaceNll(x, mu, clampLnB(l, lnB));
  const nllSum = nll.sum().div(n);
  return { nllSum, fit: l.edgeWeight > 0 ? nll.mul(edgeWeights(x, l.edgeWeight)).sum().div(n) : nllSum };
}

/** 1 + w at every pixel whose 3×3 neighbourhood holds another colour (some channel apart by more than 0.02
 *  in φ, about 6 of 255 levels), 1 elsewhere: [N, R, R, 1], no gradient (a function of the input alone). */
function edgeWeights(x: tf.Tensor4D, w: number): tf.Tensor4D {
  return tf.tidy(() => {
    // The max-pools run on one image whose channels are every (sample, channel) pair: TensorFlow's
    // MaxPool over 3 channels is slow (vectorised over channels), over N·3 it is 2× faster all told.
    const [n, r, , c] = x.shape;
    const y = x.transpose([1, 2, 0, 3]).reshape([1, r, r, n * c]) as tf.Tensor4D;
    const range = tf.maxPool(y, 3, 1, 'same').add(tf.maxPool(y.neg() as tf.Tensor4D, 3, 1, 'same')); // max − min
    const edge = range.reshape([r, r, n, c]).max(3).greater(0.02).toFloat(); // [R, R, N]
    return edge.mul(w).add(1).transpose([2, 0, 1]).expandDims(3) as tf.Tensor4D;
  });
}

/** ln b within the configured scale range. */
function clampLnB(l: DvaeLayout, lnB: tf.Tensor): tf.Tensor {
  let out = Number.isFinite(l.minLnB) ? lnB.maximum(l.minLnB) : lnB;
  if (Number.isFinite(l.maxLnB)) out = out.minimum(l.maxLnB);
  return out;
}

/** VQ-VAE's terms (van den Oord et al. 2017) with this dVAE's pixel likelihood: each cell's encoder vector
 *  z_e is replaced by its nearest code e (the decoder sees e, the encoder gets the decoder's gradient
 *  straight through), the codebook learns from ‖sg(z_e) − e‖² and the encoder from commitment·‖z_e −
 *  sg(e)‖², both summed over cells and scaled per pixel-channel like the rest of the loss. `kl` is 0. */
function vqLossTerms(
  p: Params,
  l: DvaeLayout,
  eps: number,
  x255: tf.Tensor4D,
  x: tf.Tensor4D,
): DvaeLossTerms {
  const ze4 = applyConv(p, l.encoder.output, encoderTrunk(p, l, x)); // [N, g, g, D]
  const [n, g] = ze4.shape;
  const D = l.nInit;
  const ze = ze4.reshape([-1, D]) as tf.Tensor2D; // [M, D]
  const codes = vqDistances(p, l, stopGradient(ze) as tf.Tensor2D).argMin(1); // [M]
  const oneHot = tf.oneHot(codes, l.codebookSize, 1, 0, 'int32').cast('float32') as tf.Tensor2D;
  const zq = tf.matMul(oneHot, codebook(p, l)); // [M, D], gradient to the codebook
  const codebookTerm = stopGradient(ze).sub(zq).square().sum();
  const commitTerm = ze.sub(stopGradient(zq)).square().sum();
  const st = ze.add(stopGradient(zq.sub(ze))); // value e, gradient to z_e
  const e = st.reshape([n, g, g, D]).add(p.get(`${l.decoder.input.name}.b`)!) as tf.Tensor4D;
  const { mu, lnB } = decoderFromEmbedded(p, l, e);
  const perPixelChannel = mu.shape[1] * mu.shape[2] * 3;
  const { nllSum, fit } = reconstructionTerms(l, x, mu, lnB);
  const vq = codebookTerm.add(commitTerm.mul(l.commitment)).div(n);
  const loss = fit.add(vq).div(perPixelChannel) as tf.Scalar;
  const mse = tf.tidy(() => reconstruction(mu, eps).sub(x255.div(255)).square().mean()) as tf.Scalar;
  return {
    loss,
    recon: nllSum.div(perPixelChannel) as tf.Scalar,
    kl: tf.scalar(0),
    mse,
    codes: codes.reshape([n, g, g]) as tf.Tensor3D,
  };
}

/** Identity forward, no gradient backward. */
const stopGradient = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const x = args[0] as tf.Tensor;
  return { value: x.clone(), gradFunc: (dy: tf.Tensor) => tf.zerosLike(dy) };
}) as (x: tf.Tensor) => tf.Tensor;

/** One-hot argmax of y in the forward pass, identity in the backward pass (straight-through). */
const straightThrough = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
  const y = args[0] as tf.Tensor;
  const k = y.shape[y.shape.length - 1]!;
  // int32 one-hot, then cast: tfjs-backend-wasm 4.22's OneHot ignores a float32 dtype.
  const value = tf.oneHot(y.argMax(-1), k, 1, 0, 'int32').cast('float32');
  return { value, gradFunc: (dy: tf.Tensor) => dy };
}) as (y: tf.Tensor4D) => tf.Tensor4D;

/** log K − H(q̄), q̄ the softmax of `logits` averaged over every cell: 0 when the batch uses all K codes
 *  equally, log K when every cell picks the same code with certainty. */
function codebookDivergence(logits: tf.Tensor4D): tf.Scalar {
  const k = logits.shape[3];
  const mean = tf.softmax(logits).reshape([-1, k]).mean(0); // q̄ [K]
  return mean.mul(mean.add(1e-12).log()).sum().add(Math.log(k)) as tf.Scalar;
}

// ---------------------------------------------------------------------------------------------------

let instances = 0;

export interface DvaeOptions {
  /** Initial values in `dvaeParamSpecs` order (e.g. `Trainer.exportParams('ema')`); default: fresh init. */
  params?: Float32Array[];
  /** Seed of the fresh init (default 0). */
  seed?: number;
  /** Create trainable variables (the trainer does); inference-only models leave this off. */
  trainable?: boolean;
  /** Images per forward pass inside encode/decode (bounds memory; default 32). */
  chunk?: number;
}

export class Dvae {
  readonly cfg: DvaeConfig;
  readonly layout: DvaeLayout;
  readonly specs: ParamSpec[];
  /** One variable per spec, same order. */
  readonly variables: tf.Variable[];
  private readonly byName: Params;
  private readonly chunk: number;

  constructor(cfg: DvaeConfig, opts: DvaeOptions = {}) {
    this.cfg = cfg;
    this.layout = dvaeLayout(cfg);
    this.specs = dvaeParamSpecs(cfg);
    const values = opts.params ?? initDvaeParams(cfg, opts.seed ?? 0);
    checkParamArrays(this.specs, values);
    const id = instances++;
    this.variables = this.specs.map((s, i) =>
      tf.tidy(() =>
        tf.variable(
          tf.tensor(values[i]!, s.shape, 'float32'),
          opts.trainable ?? false,
          `dvae${id}/${s.name}`,
        ),
      ),
    );
    this.byName = new Map(this.specs.map((s, i) => [s.name, this.variables[i]!]));
    this.chunk = opts.chunk ?? 32;
  }

  /** A model from exported arrays (`Trainer.exportParams('ema')`), for the sampler and encodeDataset. */
  static fromParams(cfg: DvaeConfig, params: Float32Array[]): Dvae {
    return new Dvae(cfg, { params });
  }

  /** Logits [N, g, g, K] of φ-mapped pixels [N, R, R, 3]. */
  encoderLogits(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => encoderForward(this.byName, this.layout, x));
  }

  /** Decoder statistics [N, R, R, 6] of codes [N, g, g, K]: μ (channels 0–2), then ln b (3–5). */
  decoderStats(z: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const { mu, lnB } = decoderForward(this.byName, this.layout, z);
      return tf.concat([mu, lnB], 3) as tf.Tensor4D;
    });
  }

  /** Loss terms of a uint8-valued image batch [N, R, R, 3] under Gumbel noise [N, g, g, K]. */
  lossTerms(x255: tf.Tensor4D, noise: tf.Tensor, tau: number, beta: number): DvaeLossTerms {
    return lossTerms(this.byName, this.layout, this.cfg.logitLaplaceEps, x255, noise, tau, beta);
  }

  /** Images uint8 [n, R, R, 3] → tokens [n, g·g]: argmax of the logits (no Gumbel noise). */
  encode(images: Uint8Array): Int32Array {
    const R = this.cfg.resolution;
    const per = R * R * 3;
    const n = countOf(images, per, 'images', `uint8 [n, ${R}, ${R}, 3]`);
    const cells = this.cfg.grid * this.cfg.grid;
    const out = new Int32Array(n * cells);
    for (let i0 = 0; i0 < n; i0 += this.chunk) {
      const m = Math.min(this.chunk, n - i0);
      const t = tf.tidy(() => {
        const x255 = tf.tensor4d(images.subarray(i0 * per, (i0 + m) * per), [m, R, R, 3], 'int32').toFloat();
        const logits = encoderForward(
          this.byName,
          this.layout,
          mapPixels(x255, this.cfg.logitLaplaceEps) as tf.Tensor4D,
        );
        return logits.argMax(-1); // [m, g, g]
      });
      out.set(t.dataSync() as Int32Array, i0 * cells);
      t.dispose();
    }
    return out;
  }

  /** Tokens [n, g·g] → images uint8 [n, R, R, 3]: round(255 · φ⁻¹(sigmoid(μ))). */
  decode(tokens: Int32Array): Uint8Array {
    const g = this.cfg.grid;
    const K = this.cfg.codebookSize;
    const R = this.cfg.resolution;
    const n = countOf(tokens, g * g, 'tokens', `int32 [n, ${g * g}]`);
    for (let i = 0; i < tokens.length; i++) {
      const t = tokens[i]!;
      if (!(Number.isInteger(t) && t >= 0 && t < K))
        throw new DvaeInputError('tokens', `token ${t} at index ${i} is outside [0, ${K})`);
    }
    const out = new Uint8Array(n * R * R * 3);
    for (let i0 = 0; i0 < n; i0 += this.chunk) {
      const m = Math.min(this.chunk, n - i0);
      const img = tf.tidy(() => {
        const idx = tf.tensor1d(tokens.subarray(i0 * g * g, (i0 + m) * g * g), 'int32');
        // A one-hot code through the 1×1 input conv is a row lookup: gather instead of a K-wide conv.
        const w = (this.byName.get('decoder.input.w') as tf.Tensor).reshape([K, this.layout.nInit]);
        const e = tf
          .gather(w, idx)
          .add(this.byName.get('decoder.input.b')!)
          .reshape([m, g, g, this.layout.nInit]) as tf.Tensor4D;
        const { mu } = decoderFromEmbedded(this.byName, this.layout, e);
        return reconstruction(mu, this.cfg.logitLaplaceEps).mul(255).round(); // [m, R, R, 3]
      });
      const v = img.dataSync();
      const base = i0 * R * R * 3;
      for (let j = 0; j < v.length; j++) out[base + j] = v[j]!;
      img.dispose();
    }
    return out;
  }

  /** Images uint8 [n, R, R, 3] → their reconstructions through the training-time relaxation: the decoder
   *  fed the Gumbel-softmax sample softmax((logits + g) / τ) (noise from `seed`) instead of the one-hot
   *  argmax that `encode` + `decode` use. Set beside `decode(encode(x))` it measures what the argmax
   *  loses (the soft-vs-hard gap); `continuous` feeds softmax(logits), no noise; `vq` has no relaxation
   *  and is refused. */
  reconstructRelaxed(images: Uint8Array, tau: number, seed: number): Uint8Array {
    if (this.layout.quantizer === 'vq') throw new DvaeInputError('quantizer', 'vq has no relaxed sample');
    const R = this.cfg.resolution;
    const g = this.cfg.grid;
    const per = R * R * 3;
    const n = countOf(images, per, 'images', `uint8 [n, ${R}, ${R}, 3]`);
    const out = new Uint8Array(n * per);
    for (let i0 = 0; i0 < n; i0 += this.chunk) {
      const m = Math.min(this.chunk, n - i0);
      const noise = gumbelNoise(seed, 0, i0, [m, g, g, this.cfg.codebookSize]);
      const img = tf.tidy(() => {
        const x255 = tf.tensor4d(images.subarray(i0 * per, (i0 + m) * per), [m, R, R, 3], 'int32').toFloat();
        const x = mapPixels(x255, this.cfg.logitLaplaceEps) as tf.Tensor4D;
        const logits = encoderForward(this.byName, this.layout, x);
        const z = relaxed(this.layout, logits, noise, tau);
        const { mu } = decoderForward(this.byName, this.layout, z);
        return reconstruction(mu, this.cfg.logitLaplaceEps).mul(255).round();
      });
      noise.dispose();
      out.set(img.dataSync(), i0 * per);
      img.dispose();
    }
    return out;
  }

  /** Current parameter values, in `specs` order. */
  params(): Float32Array[] {
    return this.variables.map((v) => (v.dataSync() as Float32Array).slice());
  }

  /** Overwrites the parameters with arrays in `specs` order. */
  setParams(values: Float32Array[]): void {
    checkParamArrays(this.specs, values);
    this.variables.forEach((v, i) =>
      tf.tidy(() => v.assign(tf.tensor(values[i]!, this.specs[i]!.shape, 'float32'))),
    );
  }

  dispose(): void {
    tf.dispose(this.variables);
  }
}

function checkParamArrays(specs: ParamSpec[], values: Float32Array[]): void {
  if (values.length !== specs.length) {
    throw new DvaeInputError('params', `${values.length} arrays for ${specs.length} parameters`);
  }
  specs.forEach((s, i) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const v = values[i];
    if (!(v instanceof Float32Array)) throw new DvaeInputError('params', `${s.name} is not a Float32Array`);
    if (v.length !== n)
      throw new DvaeInputError('params', `${s.name} has ${v.length} values, expected ${n} ([${s.shape}])`);
  });
}

function countOf(a: ArrayLike<number>, per: number, what: string, shape: string): number {
  const n = a.length / per;
  if (a.length === 0 || !Number.isInteger(n)) {
    throw new DvaeInputError(
      what,
      `length ${a.length} is not a positive multiple of ${per} (expected ${shape})`,
    );
  }
  return n;
}
