// A pixel-only judge of shapes-set images: which colour, shape, size and position an image shows, read
// from the pixels against the set's own definitions (./shapes.ts), never from a model. The zero-shot
// evaluation (`dalle eval`) trusts a generated image's attributes only as far as this judge is right,
// so it is tested on every ground-truth composition, size, position and jitter.
//
// Steps, each chosen to survive what a dVAE decoder does to an image (soft edges, off-white background,
// stray pixels):
//   1. foreground: a pixel whose nearest colour among {background, palette} is not the background;
//   2. the shape: the largest 8-connected foreground component (stray specks elsewhere are ignored);
//   3. colour: the palette colour nearest to the component's mean RGB, where a colour stands for itself and
//      its blends with the background (a blurred edge pulls the mean towards white, not towards another colour);
//   4. size: nearest of the SIZE_FRACTIONS sides (log scale) to the bounding box's longer side;
//   5. position: nearest 3×3 centre to the bounding box's centre (what POSITIONS defines, jitter ±1 px);
//   6. shape: the kind whose ideal outline, fitted to the bounding box, overlaps the component best (IoU):
//      square = the box, circle = the inscribed ellipse, triangle = upright, apex at the top centre.
import {
  BACKGROUND,
  COLOR_NAMES,
  POSITION_NAMES,
  POSITIONS,
  SHAPE_COLORS,
  SHAPE_KINDS,
  SIZE_FRACTIONS,
  SIZE_NAMES,
  type ShapeColor,
  type ShapeKind,
  type ShapePosition,
  type ShapeSize,
} from './shapes.ts';

export interface ShapeAnalysis {
  color: ShapeColor;
  shape: ShapeKind;
  size: ShapeSize;
  position: ShapePosition;
  /** Per attribute, in [0, 1]: 1 − (best distance / second-best distance) for colour, size and position
   *  (0 = halfway between two answers); best IoU − second-best IoU for shape. */
  confidence: { color: number; shape: number; size: number; position: number };
  /** Share of all foreground pixels that belong to the judged component (1 = a clean image). */
  purity: number;
  /** Pixels of the component. */
  pixels: number;
  /** Bounding box of the component, pixels (x, y of the top-left pixel). */
  bbox: { x: number; y: number; width: number; height: number };
  /** Mean RGB of the component. */
  meanRgb: [number, number, number];
  /** IoU of the component with each kind's ideal outline in its bounding box. */
  iou: Record<ShapeKind, number>;
}

/** The image handed to the analyzer is not a packed RGB canvas×canvas image. */
export class AnalyzerInputError extends Error {
  override name = 'AnalyzerInputError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`analyzeShape ${field} = ${String(value)}: ${rule}`);
  }
}

export interface AnalyzeOptions {
  /** Components smaller than this many pixels are noise, not a shape (default 3). */
  minPixels?: number;
}

const PALETTE: readonly (readonly [number, number, number])[] = COLOR_NAMES.map((c) => SHAPE_COLORS[c]);

function dist2(r: number, g: number, b: number, c: readonly [number, number, number]): number {
  return (r - c[0]) ** 2 + (g - c[1]) ** 2 + (b - c[2]) ** 2;
}

/** 1 − best/second (distances), in [0, 1]. */
function margin(best: number, second: number): number {
  return second > 0 ? Math.max(0, Math.min(1, 1 - best / second)) : 0;
}

/** Index of the smallest value and the confidence margin against the runner-up. */
function nearest(distances: number[]): { index: number; confidence: number } {
  let i1 = 0;
  for (let i = 1; i < distances.length; i++) if (distances[i]! < distances[i1]!) i1 = i;
  let second = Infinity;
  distances.forEach((d, i) => {
    if (i !== i1 && d < second) second = d;
  });
  return { index: i1, confidence: margin(distances[i1]!, second) };
}

/** Distance from `m` to the segment background → c: the colours of c blended with the background, which
 *  is what soft or blurred edges are. For an unblended colour it is the plain distance to c. */
function toBlend(m: readonly [number, number, number], c: readonly [number, number, number]): number {
  const d = [c[0] - BACKGROUND[0], c[1] - BACKGROUND[1], c[2] - BACKGROUND[2]];
  const v = [m[0] - BACKGROUND[0], m[1] - BACKGROUND[1], m[2] - BACKGROUND[2]];
  const t = Math.max(
    0,
    Math.min(1, (v[0]! * d[0]! + v[1]! * d[1]! + v[2]! * d[2]!) / (d[0]! ** 2 + d[1]! ** 2 + d[2]! ** 2)),
  );
  return Math.hypot(v[0]! - t * d[0]!, v[1]! - t * d[1]!, v[2]! - t * d[2]!);
}

/** Foreground mask: 1 where the nearest of {background, palette} is a palette colour. [S·S] */
export function foregroundMask(rgb: Uint8Array, canvas: number): Uint8Array {
  checkInput(rgb, canvas);
  const mask = new Uint8Array(canvas * canvas);
  for (let i = 0; i < mask.length; i++) {
    const r = rgb[3 * i]!;
    const g = rgb[3 * i + 1]!;
    const b = rgb[3 * i + 2]!;
    const bg = dist2(r, g, b, BACKGROUND);
    let fg = Infinity;
    for (const c of PALETTE) fg = Math.min(fg, dist2(r, g, b, c));
    mask[i] = fg < bg ? 1 : 0;
  }
  return mask;
}

/** Pixel indices of the largest 8-connected component of `mask` (ties: the first in raster order). */
function largestComponent(mask: Uint8Array, S: number): { pixels: number[]; total: number } {
  const label = new Int32Array(S * S).fill(-1);
  let best: number[] = [];
  let total = 0;
  const stack: number[] = [];
  for (let start = 0; start < S * S; start++) {
    if (!mask[start] || label[start] !== -1) continue;
    const comp: number[] = [];
    label[start] = start;
    stack.push(start);
    while (stack.length > 0) {
      const p = stack.pop()!;
      comp.push(p);
      const x = p % S;
      const y = (p - x) / S;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const u = x + dx;
          const v = y + dy;
          if (u < 0 || v < 0 || u >= S || v >= S) continue;
          const q = v * S + u;
          if (mask[q] && label[q] === -1) {
            label[q] = start;
            stack.push(q);
          }
        }
      }
    }
    total += comp.length;
    if (comp.length > best.length) best = comp;
  }
  return { pixels: best, total };
}

/** Whether pixel centre (u, v) lies inside kind's ideal outline fitted to the box [x0, x0+w) × [y0, y0+h). */
function insideIdeal(
  kind: ShapeKind,
  u: number,
  v: number,
  x0: number,
  y0: number,
  w: number,
  h: number,
): boolean {
  const cx = x0 + w / 2;
  const cy = y0 + h / 2;
  switch (kind) {
    case 'square':
      return true;
    case 'circle':
      return ((u - cx) / (w / 2)) ** 2 + ((v - cy) / (h / 2)) ** 2 <= 1;
    case 'triangle':
      // Half-width grows linearly from the apex (top centre) to w/2 at the base; at least half a pixel
      // so the apex row is not empty (the renderer keeps its two central pixels).
      return Math.abs(u - cx) <= Math.max(((v - y0) / h) * (w / 2), 0.5);
  }
}

/** A component's pixels: their mean colour and their bounding box [x0, x1] × [y0, y1] (inclusive). */
function componentStats(rgb: Uint8Array, pixels: number[], S: number) {
  let [sr, sg, sb] = [0, 0, 0];
  let [x0, y0, x1, y1] = [S, S, -1, -1];
  for (const p of pixels) {
    sr += rgb[3 * p]!;
    sg += rgb[3 * p + 1]!;
    sb += rgb[3 * p + 2]!;
    const x = p % S;
    const y = (p - x) / S;
    x0 = Math.min(x0, x);
    x1 = Math.max(x1, x);
    y0 = Math.min(y0, y);
    y1 = Math.max(y1, y);
  }
  const n = pixels.length;
  const meanRgb: [number, number, number] = [sr / n, sg / n, sb / n];
  return { meanRgb, x0, y0, x1, y1 };
}

interface Box {
  bx: number;
  by: number;
  bw: number;
  bh: number;
}

/** The boxes an ideal outline is fitted to: the component's own box and, where it touches the canvas edge
 *  (a square clipped by the edge), square boxes grown past the touching edges by up to a quarter side. */
function candidateBoxes(x0: number, y0: number, x1: number, y1: number, S: number): Box[] {
  const w = x1 - x0 + 1;
  const h = y1 - y0 + 1;
  const side = Math.max(w, h);
  const boxes = [{ bx: x0, by: y0, bw: w, bh: h }];
  const touches = { l: x0 === 0, r: x1 === S - 1, t: y0 === 0, b: y1 === S - 1 };
  if (touches.l || touches.r || touches.t || touches.b) {
    for (let s = side; s <= side + Math.max(2, Math.ceil(side / 4)); s++) {
      const gx = s - w;
      const gy = s - h;
      if (
        (gx > 0 && !touches.l && !touches.r) ||
        (gy > 0 && !touches.t && !touches.b) ||
        (gx === 0 && gy === 0)
      )
        continue;
      boxes.push({ bx: touches.l ? x0 - gx : x0, by: touches.t ? y0 - gy : y0, bw: s, bh: s });
    }
  }
  return boxes;
}

/** IoU of the component with each kind's ideal outline, the best over the candidate boxes, scored on the
 *  canvas pixels of the component's box only. */
function shapeIous(pixels: number[], S: number, stats: ReturnType<typeof componentStats>) {
  const { x0, y0, x1, y1 } = stats;
  const n = pixels.length;
  const inComp = new Uint8Array(S * S);
  for (const p of pixels) inComp[p] = 1;
  const boxes = candidateBoxes(x0, y0, x1, y1, S);
  const iou = {} as Record<ShapeKind, number>;
  for (const kind of SHAPE_KINDS) {
    iou[kind] = 0;
    for (const { bx, by, bw, bh } of boxes) {
      let inter = 0;
      let ideal = 0;
      for (let y = y0; y <= y1; y++) {
        for (let x = x0; x <= x1; x++) {
          if (!insideIdeal(kind, x + 0.5, y + 0.5, bx, by, bw, bh)) continue;
          ideal++;
          inter += inComp[y * S + x]!;
        }
      }
      iou[kind] = Math.max(iou[kind], inter / (ideal + n - inter));
    }
  }
  return iou;
}

/**
 * Judges one packed RGB image [canvas, canvas, 3] of the shapes set. Returns null when the image has no
 * shape (no foreground component of at least `minPixels`). Throws AnalyzerInputError on a bad input.
 */
export function analyzeShape(
  rgb: Uint8Array,
  canvas: number,
  opts: AnalyzeOptions = {},
): ShapeAnalysis | null {
  const minPixels = opts.minPixels ?? 3;
  if (!(Number.isInteger(minPixels) && minPixels >= 1))
    throw new AnalyzerInputError('minPixels', minPixels, 'must be a positive integer');
  const S = canvas;
  const { pixels, total } = largestComponent(foregroundMask(rgb, S), S);
  if (pixels.length < minPixels) return null;

  // Colour: the component's mean against the palette.
  const stats = componentStats(rgb, pixels, S);
  const { meanRgb, x0, y0, x1, y1 } = stats;
  const color = nearest(PALETTE.map((c) => toBlend(meanRgb, c)));

  // Size: the longer side of the box (a shape clipped by the canvas edge keeps its other side) against
  // each size's side, compared as ratios so that small and large are judged alike.
  const w = x1 - x0 + 1;
  const h = y1 - y0 + 1;
  const side = Math.max(w, h);
  const size = nearest(SIZE_NAMES.map((s) => Math.abs(Math.log(side / Math.max(1, S * SIZE_FRACTIONS[s])))));

  // Position: the box centre (POSITIONS defines where the box is centred, not the mass).
  const cx = x0 + w / 2;
  const cy = y0 + h / 2;
  const position = nearest(
    POSITION_NAMES.map((p) => Math.hypot(cx - S * POSITIONS[p][0], cy - S * POSITIONS[p][1])),
  );

  // Shape: IoU of the component with each ideal outline inside the same box.
  const iou = shapeIous(pixels, S, stats);
  const ranked = [...SHAPE_KINDS].sort((a, b) => iou[b] - iou[a]);
  const shape = ranked[0]!;
  const n = pixels.length;
  return {
    color: COLOR_NAMES[color.index]!,
    shape,
    size: SIZE_NAMES[size.index]!,
    position: POSITION_NAMES[position.index]!,
    confidence: {
      color: color.confidence,
      shape: iou[shape] - iou[ranked[1]!],
      size: size.confidence,
      position: position.confidence,
    },
    purity: n / total,
    pixels: n,
    bbox: { x: x0, y: y0, width: w, height: h },
    meanRgb,
    iou,
  };
}

function checkInput(rgb: Uint8Array, canvas: number): void {
  if (!Number.isInteger(canvas) || canvas < 4)
    throw new AnalyzerInputError('canvas', canvas, 'must be an integer ≥ 4');
  if (!(rgb instanceof Uint8Array))
    throw new AnalyzerInputError(
      'rgb',
      rgb === null ? 'null' : typeof rgb,
      'must be a Uint8Array of packed RGB',
    );
  if (rgb.length !== canvas * canvas * 3) {
    throw new AnalyzerInputError(
      'rgb',
      `${rgb.length} bytes`,
      `must hold canvas·canvas·3 = ${canvas * canvas * 3} bytes (packed RGB ${canvas}×${canvas})`,
    );
  }
}
