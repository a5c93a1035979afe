// How much of the data a dVAE keeps, measured on images it never trained on:
//   - codebook usage: distinct argmax codes and the perplexity exp(H) of their histogram (a collapsed
//     codebook shows as few codes or a perplexity far below the codes in use);
//   - reconstruction: encode → argmax tokens → decode, the path of encodeDataset and the sampler, scored
//     by pixel MSE and, on the shapes set, by the pixel analyzer's verdict on all four attributes, per
//     colour (a decoder that merges two colours shows as a colour judged wrong most of the time).
// Plain typed arrays in and out: the caller owns the model and decides which images count as held out.
import { analyzeShape } from '../data/shapes-analyzer.ts';
import { COLOR_NAMES, type ShapeColor, type ShapeComposition } from '../data/shapes.ts';
import type { AttributeAccuracy } from '../contract/index.ts';

/** The two operations of a dVAE the measurements need (model/dvae.ts's Dvae has both). */
export interface CodecLike {
  /** RGB [n, R, R, 3] → tokens [n, g²]. */
  encode(images: Uint8Array): Int32Array;
  /** tokens [n, g²] → RGB [n, R, R, 3]. */
  decode(tokens: Int32Array): Uint8Array;
}

export interface CodebookUsage {
  /** Distinct codes among the tokens. */
  codesUsed: number;
  /** exp(entropy) of the code histogram, in codes (≤ codesUsed). */
  perplexity: number;
}

/** Usage of a K-code codebook by a token array. */
export function codebookUsage(tokens: Int32Array, codebookSize: number): CodebookUsage {
  const counts = new Float64Array(codebookSize);
  for (const t of tokens) counts[t]! += 1;
  let used = 0;
  let h = 0;
  for (const c of counts) {
    if (c === 0) continue;
    used++;
    const p = c / tokens.length;
    h -= p * Math.log(p);
  }
  return { codesUsed: used, perplexity: tokens.length ? Math.exp(h) : 0 };
}

export interface ShapesReconstruction {
  images: number;
  accuracy: AttributeAccuracy;
  /** Per true colour: share of its reconstructions judged that colour. */
  colorAccuracy: Record<ShapeColor, number>;
  /** Colours whose reconstructions are judged right more often than not (6 = all distinct). */
  colorsDistinct: number;
}

/** Share of images whose judged attributes match `truth`, per attribute and for all four at once. */
export function judgeShapes(
  rgb: Uint8Array,
  truth: readonly ShapeComposition[],
  canvas: number,
): { accuracy: AttributeAccuracy; perImage: (ShapeComposition | null)[] } {
  const per = canvas * canvas * 3;
  const hits = { color: 0, shape: 0, size: 0, position: 0, all: 0 };
  const perImage = truth.map((t, i) => {
    const a = analyzeShape(rgb.subarray(i * per, (i + 1) * per), canvas);
    if (!a) return null;
    const ok = {
      color: a.color === t.color,
      shape: a.shape === t.shape,
      size: a.size === t.size,
      position: a.position === t.position,
    };
    for (const k of ['color', 'shape', 'size', 'position'] as const) if (ok[k]) hits[k]++;
    if (ok.color && ok.shape && ok.size && ok.position) hits.all++;
    return { color: a.color, shape: a.shape, size: a.size, position: a.position };
  });
  const n = Math.max(1, truth.length);
  return {
    accuracy: {
      color: hits.color / n,
      shape: hits.shape / n,
      size: hits.size / n,
      position: hits.position / n,
      all: hits.all / n,
    },
    perImage,
  };
}

/** The analyzer's verdict on reconstructions of shapes images whose compositions are `truth`. */
export function shapesReconstruction(
  reconstructed: Uint8Array,
  truth: readonly ShapeComposition[],
  canvas: number,
): ShapesReconstruction {
  const { accuracy, perImage } = judgeShapes(reconstructed, truth, canvas);
  const colorAccuracy = {} as Record<ShapeColor, number>;
  let colorsDistinct = 0;
  for (const c of COLOR_NAMES) {
    const idx = truth.flatMap((t, i) => (t.color === c ? [i] : []));
    const right = idx.filter((i) => perImage[i]?.color === c).length;
    colorAccuracy[c] = idx.length ? right / idx.length : Number.NaN;
    if (idx.length && right / idx.length > 0.5) colorsDistinct++;
  }
  return { images: truth.length, accuracy, colorAccuracy, colorsDistinct };
}

export interface DvaeQuality extends CodebookUsage {
  /** Images reconstructed. */
  images: number;
  /** Mean squared error of the reconstructions, pixels in [0, 1]. */
  mse: number;
  /** Present when the images are shapes-set images with known compositions. */
  shapes?: ShapesReconstruction;
  /** Wall time of the measurement. */
  seconds: number;
}

/** Encodes and decodes `images` (packed [n, R, R, 3]) and measures what survived (see file header). */
export function measureDvae(
  codec: CodecLike,
  images: Uint8Array,
  opts: { resolution: number; codebookSize: number; truth?: readonly ShapeComposition[] },
): DvaeQuality {
  const t0 = performance.now();
  const R = opts.resolution;
  const n = images.length / (R * R * 3);
  const tokens = codec.encode(images);
  const rec = codec.decode(tokens);
  let se = 0;
  for (let i = 0; i < images.length; i++) se += ((images[i]! - rec[i]!) / 255) ** 2;
  const out: DvaeQuality = {
    images: n,
    ...codebookUsage(tokens, opts.codebookSize),
    mse: se / images.length,
    seconds: 0,
  };
  if (opts.truth) out.shapes = shapesReconstruction(rec, opts.truth, R);
  out.seconds = (performance.now() - t0) / 1000;
  return out;
}
