// The two image pipelines of the paper (docs/model.md "Data and preprocessing", i.e. the appendix code), on
// plain RGB bytes, deterministic given an Rng.
//
// dVAE:        random square crop of side s = min(h, w); t ~ U{min(s, round(9/8·res)) .. min(s, round(12/8·res))};
//              AREA resize to t×t; round (half to even, like tf.rint) and clip to uint8; random crop res×res;
//              random horizontal flip.
// Transformer: square crop of side s at offset U[⌊3·slack/8⌋, max(⌊3·slack/8⌋+1, ⌊5·slack/8⌋)) per axis
//              (slack = side − s); t ~ U{res .. min(s, round(9/8·res))}; AREA resize; round/clip; random crop
//              res×res. No flip: images may contain text.
//
// AREA is true area averaging with scale in/out (what tf.image.resize(method='area') computes in TF2).
// The appendix's TF1 call passes align_corners=True, which makes TF1's AREA kernel use (in−1)/(out−1) and
// ignore a sliver of the last row and column; we follow the issue ("true area averaging") instead.
// `round` is Python 3's round (half to even), as in the appendix code.
//
// Our one extension: an image with min side s < res cannot be cropped to res (the appendix code fails
// there); we resize the square to t = res instead (area averaging also upsamples correctly).
//
// Random draws, in this order (each `rng.int`): dVAE: crop y, crop x, t, crop2 y, crop2 x, flip (int(2));
// transformer: offset y, offset x, t, crop2 y, crop2 x.
import type { Rng } from '../random/index.ts';

/** An RGB buffer whose length is not width·height·3, or non-positive/non-integer dimensions. */
export class ImageShapeError extends Error {
  override name = 'ImageShapeError';
  constructor(
    readonly width: number,
    readonly height: number,
    readonly bytes: number,
  ) {
    super(
      `RGB image ${width}×${height} needs ${width * height * 3} bytes (positive integer sides), got ${bytes}`,
    );
  }
}

/** A target resolution that is not a positive integer. */
export class ResolutionError extends Error {
  override name = 'ResolutionError';
  constructor(readonly resolution: number) {
    super(`resolution must be a positive integer, got ${resolution}`);
  }
}

function checkImage(rgb: Uint8Array, w: number, h: number): void {
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 1 || h < 1 || rgb.length !== w * h * 3) {
    throw new ImageShapeError(w, h, rgb.length);
  }
}

function checkRes(res: number): void {
  if (!Number.isInteger(res) || res < 1) throw new ResolutionError(res);
}

/** Python 3's round(): ties go to the even integer (round(22.5) = 22). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** Per output index along one axis: the first input index it overlaps and the integer overlaps, in
 *  units of 1/out pixel (input pixel i spans [i·out, (i+1)·out), output pixel o spans [o·in, (o+1)·in)).
 *  Flat arrays (weights of output o at [o·k, o·k + count[o])) keep the inner loops monomorphic. */
interface AxisWeights {
  start: Int32Array; // [out]
  count: Int32Array; // [out]
  k: number; // max inputs per output
  weights: Float64Array; // [out, k]
}

function axisWeights(inSize: number, outSize: number): AxisWeights {
  const k = Math.ceil(inSize / outSize) + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * k);
  for (let o = 0; o < outSize; o++) {
    const lo = o * inSize;
    const hi = (o + 1) * inSize;
    const first = Math.floor(lo / outSize);
    const last = Math.ceil(hi / outSize) - 1;
    start[o] = first;
    count[o] = last - first + 1;
    for (let i = first; i <= last; i++) {
      weights[o * k + i - first] = Math.min(hi, (i + 1) * outSize) - Math.max(lo, i * outSize);
    }
  }
  return { start, count, k, weights };
}

/** AREA resize as exact integer numerators: value = num / (inW·inH). Separable (rows, then columns);
 *  every partial sum is an integer below 2^53, so results are exact. */
function areaNumerators(src: Uint8Array, w: number, h: number, outW: number, outH: number): Float64Array {
  const wx = axisWeights(w, outW);
  const wy = axisWeights(h, outH);
  const rows = new Float64Array(h * outW * 3); // [h, outW, 3]
  for (let y = 0; y < h; y++) {
    const rowIn = y * w * 3;
    let q = y * outW * 3;
    for (let ox = 0; ox < outW; ox++) {
      let p = rowIn + wx.start[ox] * 3;
      const wBase = ox * wx.k;
      const n = wx.count[ox];
      let r = 0;
      let g = 0;
      let b = 0;
      for (let j = 0; j < n; j++) {
        const c = wx.weights[wBase + j];
        r += c * src[p];
        g += c * src[p + 1];
        b += c * src[p + 2];
        p += 3;
      }
      rows[q++] = r;
      rows[q++] = g;
      rows[q++] = b;
    }
  }
  const out = new Float64Array(outH * outW * 3); // [outH, outW, 3]
  const stride = outW * 3;
  for (let oy = 0; oy < outH; oy++) {
    const base = oy * stride;
    const wBase = oy * wy.k;
    const n = wy.count[oy];
    for (let j = 0; j < n; j++) {
      const c = wy.weights[wBase + j];
      const rowBase = (wy.start[oy] + j) * stride;
      for (let i = 0; i < stride; i++) out[base + i] += c * rows[rowBase + i];
    }
  }
  return out;
}

/** AREA resize (true area averaging) of an RGB image, as floats in [0, 255]: [outH, outW, 3]. */
export function areaResize(rgb: Uint8Array, w: number, h: number, outW: number, outH: number): Float64Array {
  checkImage(rgb, w, h);
  checkRes(outW);
  checkRes(outH);
  const num = areaNumerators(rgb, w, h, outW, outH);
  const den = w * h;
  for (let i = 0; i < num.length; i++) num[i] /= den;
  return num;
}

/** AREA resize, then round half to even (tf.rint) and clip to uint8, decided exactly on the integer
 *  numerators so ties (x.5) never depend on float rounding: [outH, outW, 3]. */
export function areaResizeUint8(
  rgb: Uint8Array,
  w: number,
  h: number,
  outW: number,
  outH: number,
): Uint8Array {
  checkImage(rgb, w, h);
  checkRes(outW);
  checkRes(outH);
  const num = areaNumerators(rgb, w, h, outW, outH);
  const den = w * h;
  const out = new Uint8Array(num.length);
  for (let i = 0; i < num.length; i++) {
    const n = num[i];
    let q = Math.floor(n / den);
    // The float quotient can land one off; fix it on the exact integer remainder, then decide the tie.
    let rem = n - q * den;
    if (rem < 0) {
      q--;
      rem += den;
    } else if (rem >= den) {
      q++;
      rem -= den;
    }
    if (2 * rem > den || (2 * rem === den && (q & 1) === 1)) q++;
    out[i] = q > 255 ? 255 : q; // an average of bytes is never negative
  }
  return out;
}

/** Copy the w×h window at (x, y) out of an RGB image. */
export function cropRgb(
  rgb: Uint8Array,
  width: number,
  height: number,
  x: number,
  y: number,
  w: number,
  h: number,
): Uint8Array {
  checkImage(rgb, width, height);
  if (x < 0 || y < 0 || x + w > width || y + h > height || w < 1 || h < 1) {
    throw new RangeError(`crop ${w}×${h} at (${x}, ${y}) leaves the ${width}×${height} image`);
  }
  const out = new Uint8Array(w * h * 3);
  for (let r = 0; r < h; r++) {
    const from = ((y + r) * width + x) * 3;
    out.set(rgb.subarray(from, from + w * 3), r * w * 3);
  }
  return out;
}

/** Mirror an RGB image left to right. */
export function flipHorizontal(rgb: Uint8Array, w: number, h: number): Uint8Array {
  checkImage(rgb, w, h);
  const out = new Uint8Array(rgb.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const a = (y * w + x) * 3;
      const b = (y * w + (w - 1 - x)) * 3;
      out[b] = rgb[a];
      out[b + 1] = rgb[a + 1];
      out[b + 2] = rgb[a + 2];
    }
  }
  return out;
}

/** Every random choice of one preprocessing call, drawn up front so tests can check their ranges. */
export interface CropPlan {
  /** Square crop of the source: top-left corner and side s = min(w, h). */
  square: { x: number; y: number; side: number };
  /** Side the square is AREA-resized to. */
  t: number;
  /** Top-left corner of the final res×res crop inside the t×t image. */
  crop: { x: number; y: number };
  /** Mirror left to right (dVAE only). */
  flip: boolean;
}

/** The dVAE pipeline's random choices for a w×h image (draw order in the file header). */
export function planDvae(w: number, h: number, res: number, rng: Rng): CropPlan {
  checkRes(res);
  const side = Math.min(w, h);
  const y = rng.int(h - side + 1);
  const x = rng.int(w - side + 1);
  const tMin = Math.min(side, roundHalfEven((9 / 8) * res));
  const tMax = Math.min(side, roundHalfEven((12 / 8) * res));
  let t = tMin + rng.int(tMax - tMin + 1);
  if (side < res) t = res; // extension: the paper's code cannot crop res out of a smaller image
  const cy = rng.int(t - res + 1);
  const cx = rng.int(t - res + 1);
  const flip = rng.int(2) === 1;
  return { square: { x, y, side }, t, crop: { x: cx, y: cy }, flip };
}

/** Offset of the transformer's square crop on one axis: U[⌊3·slack/8⌋, max(⌊3·slack/8⌋+1, ⌊5·slack/8⌋)). */
function centredOffset(slack: number, rng: Rng): number {
  const lo = Math.floor((3 * slack) / 8);
  const hi = Math.max(lo + 1, Math.floor((5 * slack) / 8));
  return lo + rng.int(hi - lo);
}

/** The transformer pipeline's random choices for a w×h image (draw order in the file header). */
export function planTransformer(w: number, h: number, res: number, rng: Rng): CropPlan {
  checkRes(res);
  const side = Math.min(w, h);
  const y = centredOffset(h - side, rng);
  const x = centredOffset(w - side, rng);
  const tMax = Math.max(res, Math.min(side, roundHalfEven((9 / 8) * res)));
  const t = res + rng.int(tMax - res + 1);
  const cy = rng.int(t - res + 1);
  const cx = rng.int(t - res + 1);
  return { square: { x, y, side }, t, crop: { x: cx, y: cy }, flip: false };
}

/** Execute a plan: square crop → AREA resize to t×t → round/clip → res×res crop → optional flip. */
export function applyPlan(rgb: Uint8Array, w: number, h: number, res: number, plan: CropPlan): Uint8Array {
  const { square, t, crop, flip } = plan;
  const sq =
    square.side === w && square.side === h
      ? rgb
      : cropRgb(rgb, w, h, square.x, square.y, square.side, square.side);
  const resized = t === square.side ? sq : areaResizeUint8(sq, square.side, square.side, t, t); // [t, t, 3]
  const out = t === res ? resized : cropRgb(resized, t, t, crop.x, crop.y, res, res); // [res, res, 3]
  if (!flip) return out === rgb ? out.slice() : out;
  return flipHorizontal(out, res, res);
}

/** dVAE preprocessing of docs/model.md → [res, res, 3] uint8. Deterministic given the rng's key. */
export function preprocessDvae(rgb: Uint8Array, w: number, h: number, res: number, rng: Rng): Uint8Array {
  checkImage(rgb, w, h);
  return applyPlan(rgb, w, h, res, planDvae(w, h, res, rng));
}

/** Transformer preprocessing of docs/model.md (no flip) → [res, res, 3] uint8. Deterministic given the rng's key. */
export function preprocessTransformer(
  rgb: Uint8Array,
  w: number,
  h: number,
  res: number,
  rng: Rng,
): Uint8Array {
  checkImage(rgb, w, h);
  return applyPlan(rgb, w, h, res, planTransformer(w, h, res, rng));
}
