// The attention masks of DALL-E's sparse transformer (docs/model.md, "Stage 2"; the paper's appendix B.1).
//
// The sequence is [text positions 0..L-1, image positions L..L+N-1] with N = grid². Image position L+j
// holds start-of-image for j = 0 and image token j-1 otherwise, and predicts image token j; every mask
// below is stated on positions, as the paper draws them.
//
// One mask per layer covers all three parts:
//   text → text   causal (p' ≤ p);
//   image → text  every image position sees every text position (padding positions included: they carry
//                 learned padding embeddings, not −∞);
//   text → image  never;
//   image → image by layer: row, column or convolutional, each causal in raster order.
// The image → image patterns are Toeplitz in the raster offset d = j − j' ≥ 0 ("wraparound", as the
// paper says of row attention), so they are sized by the grid side w only:
//   row     d ≤ w: the position itself and the previous w, so the farthest one is the same column of the
//           previous row (the paper's "previous w+1 tokens in raster order", its figure 11a with w = 4);
//   column  d mod w = 0: the same column in every earlier row (figure 11b; the paper's transposed layout
//           11c is a GPU-speed trick that attends the same set);
//   conv    a k×k kernel centred on the position, keeping its causal half (PixelCNN's masked kernel):
//           d = dr·w + dc with 0 ≤ dr ≤ h, −h ≤ dc ≤ h, h = ⌊k/2⌋, d ≥ 0 (figure 11d with k = 3; 11 in
//           the paper).
//   full    d ≥ 0: every earlier image position (a dense causal transformer; not the paper's, which
//           sparsifies for speed at a 32×32 grid — a config choice of small models, where the T × T
//           scores cost the same under every pattern).
// No tfjs here: masks are plain arrays so they can be asserted exactly and built once per model.
import type { TransformerConfig } from '../config/index.ts';

export type AttentionKind = 'row' | 'column' | 'conv' | 'full';

/** Which image → image patterns a model's layers use (`transformer.attention`): the paper's row/column/conv
 *  rule, or full causal attention in every layer. */
export type AttentionLayout = NonNullable<TransformerConfig['attention']>;

export interface MaskGeometry {
  /** Text positions L. */
  textLen: number;
  /** Image grid side w (N = w² image positions). */
  grid: number;
  /** Side k of the last layer's convolutional kernel (odd; paper: 11). */
  convKernel: number;
}

/** A mask geometry that cannot describe a sequence (non-positive sizes, an even kernel). */
export class MaskGeometryError extends Error {
  override name = 'MaskGeometryError';
  readonly fatal = true;
  constructor(
    readonly field: keyof MaskGeometry,
    readonly value: number,
    readonly reason: string,
  ) {
    super(`mask geometry: ${field} = ${value} ${reason}`);
  }
}

/** A layer index outside [0, layers). */
export class LayerIndexError extends Error {
  override name = 'LayerIndexError';
  constructor(
    readonly layer: number,
    readonly layers: number,
  ) {
    super(`layer index ${layer} is outside [0, ${layers})`);
  }
}

/**
 * The image → image pattern of 0-based layer `layer` out of `layers`. The paper numbers layers
 * i = 1..64: the last one is convolutional; among the others, column attention where (i − 2) mod 4 = 0
 * (i = 2, 6, 10, …), row attention elsewhere.
 */
export function attentionKindOf(layer: number, layers: number): AttentionKind {
  if (!Number.isInteger(layers) || layers < 1) throw new LayerIndexError(layer, layers);
  if (!Number.isInteger(layer) || layer < 0 || layer >= layers) throw new LayerIndexError(layer, layers);
  const i = layer + 1;
  if (i === layers) return 'conv';
  return (((i - 2) % 4) + 4) % 4 === 0 ? 'column' : 'row';
}

/** The patterns of every layer, in order: the paper's rule (`sparse`), or `full` in every layer. */
export function layerKinds(layers: number, layout: AttentionLayout = 'sparse'): AttentionKind[] {
  return Array.from({ length: layers }, (_, l) => (layout === 'full' ? 'full' : attentionKindOf(l, layers)));
}

export function sequenceLength(g: Pick<MaskGeometry, 'textLen' | 'grid'>): number {
  return g.textLen + g.grid * g.grid;
}

function checkGeometry(g: MaskGeometry): void {
  for (const field of ['textLen', 'grid', 'convKernel'] as const) {
    if (!Number.isInteger(g[field]) || g[field] < 1)
      throw new MaskGeometryError(field, g[field], 'must be a positive integer');
  }
  if (g.convKernel % 2 === 0)
    throw new MaskGeometryError('convKernel', g.convKernel, 'must be odd (the kernel is centred)');
}

/** Whether image position j may attend image position j − d (d ≥ 0) under `kind` on a w-wide grid. */
export function imageOffsetAllowed(kind: AttentionKind, d: number, w: number, convKernel: number): boolean {
  if (d < 0) return false;
  switch (kind) {
    case 'row':
      return d <= w;
    case 'column':
      return d % w === 0;
    case 'full':
      return true;
    case 'conv': {
      const h = (convKernel - 1) / 2;
      for (let dr = 0; dr <= h; dr++) if (Math.abs(d - dr * w) <= h) return true;
      return false;
    }
  }
}

/** Whether query position q may attend key position k (both in [0, L + w²)). */
export function attends(kind: AttentionKind, g: MaskGeometry, q: number, k: number): boolean {
  if (k > q) return false; // causal everywhere
  if (q < g.textLen) return true; // text → text, causal
  if (k < g.textLen) return true; // image → every text position
  return imageOffsetAllowed(kind, q - k, g.grid, g.convKernel);
}

/**
 * The full mask, row-major [T, T] with T = L + w²: 1 where query position q may attend key position k.
 * Every row has at least its own position, so no softmax row is empty.
 */
export function attentionMask(kind: AttentionKind, g: MaskGeometry): Uint8Array {
  checkGeometry(g);
  const T = sequenceLength(g);
  const m = new Uint8Array(T * T);
  for (let q = 0; q < T; q++) for (let k = 0; k <= q; k++) if (attends(kind, g, q, k)) m[q * T + k] = 1;
  return m;
}

/** Additive form of `attentionMask` for softmax scores: 0 where allowed, −1e9 where not. A large finite
 *  value instead of −∞ keeps 0·(−∞) = NaN out of gradients; exp(−1e9 + s) underflows to exactly 0. */
export const MASKED_SCORE = -1e9;

export function attentionBias(kind: AttentionKind, g: MaskGeometry): Float32Array {
  const m = attentionMask(kind, g);
  const bias = new Float32Array(m.length);
  for (let i = 0; i < m.length; i++) bias[i] = m[i] ? 0 : MASKED_SCORE;
  return bias;
}

/** Key positions query position q may attend, ascending. */
export function allowedKeys(kind: AttentionKind, g: MaskGeometry, q: number): number[] {
  checkGeometry(g);
  const out: number[] = [];
  for (let k = 0; k <= q; k++) if (attends(kind, g, q, k)) out.push(k);
  return out;
}
