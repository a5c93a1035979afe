// The synthetic shapes set: our test bed for zero-shot generation. One shape per
// white S×S canvas; colour × shape × size × position, with six colour–shape pairs held out of every
// training split so the demo can ask for compositions the model never saw.
//
// Every attribute is an exported constant: the demo's evaluator judges generated images with a pixel
// analyzer against exactly these definitions.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { encodePng } from './image.ts';
import { rngFor } from '../random/index.ts';
import { tarBytes, type TarEntry } from './tar.ts';

/** sRGB of each colour. */
export const SHAPE_COLORS = {
  red: [220, 40, 40],
  green: [40, 170, 70],
  blue: [40, 90, 220],
  yellow: [235, 200, 30],
  purple: [140, 60, 180],
  orange: [245, 130, 30],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ShapeColor = keyof typeof SHAPE_COLORS;
export const COLOR_NAMES = Object.keys(SHAPE_COLORS) as ShapeColor[];

/** Canvas colour. */
export const BACKGROUND = [255, 255, 255] as const;

export const SHAPE_KINDS = ['circle', 'square', 'triangle'] as const;
export type ShapeKind = (typeof SHAPE_KINDS)[number];

/** Colours that only training scenes may add (dataset option `extraColors`, in this order): never asked for
 *  by the evaluation, never held out. They surround the six with more colour–shape pairs to learn from. */
export const EXTRA_COLORS = {
  pink: [235, 100, 170],
  cyan: [30, 190, 210],
  brown: [130, 80, 40],
  gray: [128, 128, 128],
  lime: [160, 210, 40],
  navy: [30, 40, 110],
} as const satisfies Record<string, readonly [number, number, number]>;
export type ExtraColor = keyof typeof EXTRA_COLORS;

/** Shape kinds that only training scenes may add (dataset option `extraShapes`, in this order). */
export const EXTRA_SHAPE_KINDS = ['diamond', 'cross', 'ring'] as const;
export type ExtraShapeKind = (typeof EXTRA_SHAPE_KINDS)[number];

/** Every colour and kind a training image may show. */
export type AnyColor = ShapeColor | ExtraColor;
export type AnyShapeKind = ShapeKind | ExtraShapeKind;
const ANY_COLORS: Record<AnyColor, readonly [number, number, number]> = { ...SHAPE_COLORS, ...EXTRA_COLORS };
const ANY_KINDS: readonly AnyShapeKind[] = [...SHAPE_KINDS, ...EXTRA_SHAPE_KINDS];

/** Side of the shape's bounding box as a fraction of the canvas: circle diameter, square side,
 *  triangle base and height. Pixels: `shapeSizePx(size, S)`. */
export const SIZE_FRACTIONS = { small: 1 / 4, large: 1 / 2 } as const;
export type ShapeSize = keyof typeof SIZE_FRACTIONS;
export const SIZE_NAMES = Object.keys(SIZE_FRACTIONS) as ShapeSize[];

/** Centre of the bounding box as fractions (x, y) of the canvas: a 3×3 grid at S/4, S/2, 3S/4. */
export const POSITIONS = {
  'top left': [1 / 4, 1 / 4],
  top: [1 / 2, 1 / 4],
  'top right': [3 / 4, 1 / 4],
  left: [1 / 4, 1 / 2],
  center: [1 / 2, 1 / 2],
  right: [3 / 4, 1 / 2],
  'bottom left': [1 / 4, 3 / 4],
  bottom: [1 / 2, 3 / 4],
  'bottom right': [3 / 4, 3 / 4],
} as const satisfies Record<string, readonly [number, number]>;
export type ShapePosition = keyof typeof POSITIONS;
export const POSITION_NAMES = Object.keys(POSITIONS) as ShapePosition[];

/** The centre moves by an integer in [−JITTER_PX, JITTER_PX] on each axis. */
export const JITTER_PX = 1;
export const DEFAULT_CANVAS = 32;

/** Colour–shape pairs never in a training split (all sizes and positions): each colour loses one shape,
 *  each shape two colours, so every word is still seen in training. */
export const HELD_OUT: readonly { color: ShapeColor; shape: ShapeKind }[] = [
  { color: 'green', shape: 'triangle' },
  { color: 'blue', shape: 'circle' },
  { color: 'yellow', shape: 'square' },
  { color: 'purple', shape: 'triangle' },
  { color: 'orange', shape: 'circle' },
  { color: 'red', shape: 'square' },
];

export interface ShapeComposition {
  color: ShapeColor;
  shape: ShapeKind;
  size: ShapeSize;
  position: ShapePosition;
}

/** A composition plus the centre offset in pixels. */
export interface ShapeSpec extends ShapeComposition {
  jitter?: { dx: number; dy: number };
}

/** One shape of a training scene: a ShapeSpec whose colour and kind may also be an extra one. */
export interface SceneShape {
  color: AnyColor;
  shape: AnyShapeKind;
  size: ShapeSize;
  position: ShapePosition;
  jitter?: { dx: number; dy: number };
}

/** An attribute value outside the constants above, or a bad canvas. */
export class ShapeSpecError extends Error {
  override name = 'ShapeSpecError';
  constructor(
    readonly field: string,
    readonly value: unknown,
  ) {
    super(`shape ${field} ${JSON.stringify(value)} is not valid`);
  }
}

export function isHeldOut(c: { color: AnyColor; shape: AnyShapeKind }): boolean {
  return HELD_OUT.some((h) => h.color === c.color && h.shape === c.shape);
}

/** All 6 × 3 × 2 × 9 = 324 compositions in a fixed order (colour, shape, size, position). */
export const ALL_COMPOSITIONS: readonly ShapeComposition[] = COLOR_NAMES.flatMap((color) =>
  SHAPE_KINDS.flatMap((shape) =>
    SIZE_NAMES.flatMap((size) => POSITION_NAMES.map((position) => ({ color, shape, size, position }))),
  ),
);
/** The 216 compositions a training split draws from. */
export const TRAIN_COMPOSITIONS: readonly ShapeComposition[] = ALL_COMPOSITIONS.filter((c) => !isHeldOut(c));
/** The 108 held-out compositions. */
export const HELD_OUT_COMPOSITIONS: readonly ShapeComposition[] = ALL_COMPOSITIONS.filter((c) =>
  isHeldOut(c),
);

/** Bounding-box side in pixels on an S×S canvas (S/4 → small, S/2 → large, rounded). */
export function shapeSizePx(size: ShapeSize, canvas: number): number {
  return Math.max(1, Math.round(canvas * SIZE_FRACTIONS[size]));
}

/** Centre of the bounding box in continuous pixel coordinates (pixel (x, y) covers [x, x+1) × [y, y+1)). */
export function shapeCentre(
  position: ShapePosition,
  canvas: number,
  jitter = { dx: 0, dy: 0 },
): { x: number; y: number } {
  const [fx, fy] = POSITIONS[position];
  return { x: canvas * fx + jitter.dx, y: canvas * fy + jitter.dy };
}

function check(spec: SceneShape, canvas: number): void {
  if (!Number.isInteger(canvas) || canvas < 4) throw new ShapeSpecError('canvas', canvas);
  if (!(spec.color in ANY_COLORS)) throw new ShapeSpecError('color', spec.color);
  if (!ANY_KINDS.includes(spec.shape)) throw new ShapeSpecError('shape', spec.shape);
  if (!(spec.size in SIZE_FRACTIONS)) throw new ShapeSpecError('size', spec.size);
  if (!(spec.position in POSITIONS)) throw new ShapeSpecError('position', spec.position);
  const j = spec.jitter;
  if (
    j &&
    (!Number.isInteger(j.dx) ||
      !Number.isInteger(j.dy) ||
      Math.abs(j.dx) > JITTER_PX ||
      Math.abs(j.dy) > JITTER_PX)
  ) {
    throw new ShapeSpecError('jitter', j);
  }
}

/** Whether the point (u, v) lies inside the shape with bounding-box centre (cx, cy) and side d.
 *  Half-open bounds so a square of side d covers exactly d×d pixel centres. */
function inside(shape: AnyShapeKind, u: number, v: number, cx: number, cy: number, d: number): boolean {
  const h = d / 2;
  switch (shape) {
    case 'diamond':
      return Math.abs(u - cx) + Math.abs(v - cy) <= h;
    case 'cross': {
      // A plus sign: two bars a third of the side wide.
      const arm = Math.max(d / 6, 0.5);
      const inBox = Math.abs(u - cx) < h && Math.abs(v - cy) < h;
      return inBox && (Math.abs(u - cx) <= arm || Math.abs(v - cy) <= arm);
    }
    case 'ring': {
      const r2 = (u - cx) ** 2 + (v - cy) ** 2;
      const inner = Math.max(h - Math.max(d / 4, 1.5), 0);
      return r2 <= h * h && r2 > inner * inner;
    }
    case 'square':
      return u >= cx - h && u < cx + h && v >= cy - h && v < cy + h;
    case 'circle':
      return (u - cx) ** 2 + (v - cy) ** 2 <= h * h;
    case 'triangle': {
      // Upright isosceles: apex at (cx, cy − h), base of width d on y = cy + h. The apex row keeps the
      // two central pixels (half-width ≥ ½), so the bounding box is d×d like the other shapes.
      const top = cy - h;
      return v >= top && v < cy + h && Math.abs(u - cx) <= Math.max((v - top) / 2, 0.5);
    }
  }
}

/** Render one shape on a white `canvas`×`canvas` image → packed RGB [S, S, 3]. A pixel takes the shape's
 *  exact colour when its centre is inside the shape (no anti-aliasing: the analyzer sees pure colours). */
export function renderShape(spec: SceneShape, canvas = DEFAULT_CANVAS): Uint8Array {
  return renderScene([spec], canvas);
}

/** Render shapes onto one white canvas, later ones over earlier ones → packed RGB [S, S, 3]. */
export function renderScene(shapes: readonly SceneShape[], canvas = DEFAULT_CANVAS): Uint8Array {
  const rgb = new Uint8Array(canvas * canvas * 3).fill(255);
  for (const spec of shapes) paint(rgb, spec, canvas);
  return rgb;
}

function paint(rgb: Uint8Array, spec: SceneShape, canvas: number): void {
  check(spec, canvas);
  const [r, g, b] = ANY_COLORS[spec.color];
  const d = shapeSizePx(spec.size, canvas);
  const { x: cx, y: cy } = shapeCentre(spec.position, canvas, spec.jitter);
  const x0 = Math.max(0, Math.floor(cx - d / 2) - 1);
  const x1 = Math.min(canvas - 1, Math.ceil(cx + d / 2) + 1);
  const y0 = Math.max(0, Math.floor(cy - d / 2) - 1);
  const y1 = Math.min(canvas - 1, Math.ceil(cy + d / 2) + 1);
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      if (!inside(spec.shape, x + 0.5, y + 0.5, cx, cy, d)) continue;
      const p = (y * canvas + x) * 3;
      rgb[p] = r;
      rgb[p + 1] = g;
      rgb[p + 2] = b;
    }
  }
}

/** Caption templates; every one names all four attributes with the words of the constants above. */
export const CAPTION_TEMPLATES: readonly ((c: SceneShape) => string)[] = [
  (c) => `a ${c.size} ${c.color} ${c.shape} at the ${c.position}`,
  (c) => `a ${c.size} ${c.color} ${c.shape} in the ${c.position}`,
  (c) => `there is a ${c.size} ${c.color} ${c.shape} at the ${c.position}`,
  (c) => `${c.size} ${c.color} ${c.shape}, ${c.position}`,
  (c) => `a ${c.size} ${c.shape} in ${c.color} at the ${c.position}`,
  (c) => `the ${c.position} has a ${c.size} ${c.color} ${c.shape}`,
];

/** Every caption of a composition, one per template, in template order. */
export function shapeCaptions(c: SceneShape): string[] {
  return CAPTION_TEMPLATES.map((t) => t(c));
}

/** The composition a caption names, or null when an attribute is missing or named twice. Accepts any
 *  phrasing that uses the attribute words ("centre" too), so the demo can judge free-form prompts. */
export function parseShapesCaption(caption: string): ShapeComposition | null {
  const words = caption
    .toLowerCase()
    .replace(/centre/g, 'center')
    .split(/[^a-z]+/)
    .filter(Boolean);
  const pick = <T extends string>(names: readonly T[]): T | null => {
    const found = names.filter((n) => words.includes(n));
    return found.length === 1 ? found[0] : null;
  };
  const color = pick(COLOR_NAMES);
  const shape = pick(SHAPE_KINDS);
  const size = pick(SIZE_NAMES);
  const vertical = pick(['top', 'bottom'] as const);
  const horizontal = pick(['left', 'right'] as const);
  const centre = words.includes('center');
  let position: ShapePosition | null = null;
  if (vertical && horizontal) position = `${vertical} ${horizontal}`;
  else if (vertical || horizontal) position = (vertical ?? horizontal)!;
  else if (centre) position = 'center';
  if (!color || !shape || !size || !position) return null;
  // "top" and "bottom" both present, or a corner plus "center", is ambiguous.
  if (
    words.filter((w) => w === 'top' || w === 'bottom').length > 1 ||
    words.filter((w) => w === 'left' || w === 'right').length > 1
  )
    return null;
  return { color, shape, size, position };
}

export type ShapesSplit = 'train' | 'heldout';

export interface ShapesOptions {
  /** Items in the train split (the held-out split always has its 108 compositions once each). */
  count?: number;
  canvas?: number;
  seed?: number;
  split?: ShapesSplit;
}

/** Item i of a split: train cycles through TRAIN_COMPOSITIONS (so any 216 consecutive items cover all),
 *  heldout lists HELD_OUT_COMPOSITIONS; the jitter is drawn from (seed, split, i). */
export function shapeItem(i: number, split: ShapesSplit, seed: number): ShapeSpec {
  const list = split === 'train' ? TRAIN_COMPOSITIONS : HELD_OUT_COMPOSITIONS;
  const c = list[i % list.length];
  const rng = rngFor(seed, 'shapes-jitter', split, i);
  const dx = rng.int(2 * JITTER_PX + 1) - JITTER_PX;
  const dy = rng.int(2 * JITTER_PX + 1) - JITTER_PX;
  return { ...c, jitter: { dx, dy } };
}

/** Number of items in a split. */
export function shapesSplitSize(split: ShapesSplit, count: number): number {
  return split === 'train' ? count : HELD_OUT_COMPOSITIONS.length;
}

export interface WriteShapesOptions extends ShapesOptions {
  /** WebDataset: samples per .tar shard (default 1000). */
  shardSize?: number;
}

/** Write a split as (a) a folder of `<key>.png` + `<key>.txt` (all captions, one per line) or (b) WebDataset
 *  shards `shapes-<n>.tar` holding `<key>.png` + `<key>.txt`. Keys are the zero-padded item index.
 *  Returns the paths written. */
export async function writeShapes(
  dir: string,
  format: 'folder' | 'webdataset',
  opts: WriteShapesOptions = {},
): Promise<string[]> {
  const { count = 4096, canvas = DEFAULT_CANVAS, seed = 1234, split = 'train', shardSize = 1000 } = opts;
  if (!Number.isInteger(count) || count < 1) throw new ShapeSpecError('count', count);
  if (!Number.isInteger(shardSize) || shardSize < 1) throw new ShapeSpecError('shardSize', shardSize);
  await mkdir(dir, { recursive: true });
  const n = shapesSplitSize(split, count);
  const written: string[] = [];
  let shard: TarEntry[] = [];
  const flush = async (): Promise<void> => {
    if (shard.length === 0) return;
    const path = join(dir, `shapes-${String(written.length).padStart(6, '0')}.tar`);
    await writeFile(path, tarBytes(shard));
    written.push(path);
    shard = [];
  };
  for (let i = 0; i < n; i++) {
    const spec = shapeItem(i, split, seed);
    const key = String(i).padStart(6, '0');
    const png = await encodePng(renderShape(spec, canvas), canvas, canvas);
    const txt = Buffer.from(shapeCaptions(spec).join('\n') + '\n');
    if (format === 'folder') {
      await writeFile(join(dir, `${key}.png`), png);
      await writeFile(join(dir, `${key}.txt`), txt);
      written.push(join(dir, `${key}.png`), join(dir, `${key}.txt`));
    } else {
      shard.push({ name: `${key}.png`, data: png }, { name: `${key}.txt`, data: txt });
      if (shard.length >= 2 * shardSize) await flush();
    }
  }
  await flush();
  return written;
}
