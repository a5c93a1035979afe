// Training scenes of the shapes set beyond one shape of six colours and three kinds: the data levers for
// zero-shot composition, each a dataset option (config/spec.ts, ShapesDatasetConfig):
//   extraColors  more colours (EXTRA_COLORS), each with every kind: the shape word, not the colour,
//                must decide the shape once most colours come in most kinds;
//   extraShapes  more kinds (EXTRA_SHAPE_KINDS), each in every colour;
//   maxShapes    1..maxShapes shapes per image, each with its own colour, kind, size and position, and a
//                caption naming each: colour and kind are bound by the words next to each other, not by
//                what usually goes together.
// One rule holds whatever the options: no held-out colour–shape pair (HELD_OUT) is ever drawn, in any
// shape of any scene, so it appears in no training image and no training caption. With every option at
// its default a scene is exactly the single-shape item of shapes.ts (same image, same captions).
import { rngFor } from '../random/index.ts';
import {
  CAPTION_TEMPLATES,
  COLOR_NAMES,
  EXTRA_COLORS,
  EXTRA_SHAPE_KINDS,
  isHeldOut,
  JITTER_PX,
  POSITION_NAMES,
  POSITIONS,
  SHAPE_KINDS,
  shapeCaptions,
  shapeItem,
  shapeSizePx,
  SIZE_NAMES,
  type AnyColor,
  type AnyShapeKind,
  type SceneShape,
} from './shapes.ts';

export interface SceneOptions {
  /** How many of EXTRA_COLORS join the six (0..6). */
  extraColors: number;
  /** How many of EXTRA_SHAPE_KINDS join the three (0..3). */
  extraShapes: number;
  /** Shapes per image, drawn uniformly from 1..maxShapes (1..3). */
  maxShapes: number;
}

export const DEFAULT_SCENES: SceneOptions = { extraColors: 0, extraShapes: 0, maxShapes: 1 };

export function isDefaultScenes(o: SceneOptions): boolean {
  return o.extraColors === 0 && o.extraShapes === 0 && o.maxShapes === 1;
}

/** The compositions a training shape is drawn from: every (colour, kind, size, position) of the enlarged
 *  palette and kinds except the held-out pairs, colour-major like TRAIN_COMPOSITIONS. */
export function sceneCompositions(o: SceneOptions): SceneShape[] {
  const colors: AnyColor[] = [
    ...COLOR_NAMES,
    ...(Object.keys(EXTRA_COLORS) as AnyColor[]).slice(0, o.extraColors),
  ];
  const kinds: AnyShapeKind[] = [...SHAPE_KINDS, ...EXTRA_SHAPE_KINDS.slice(0, o.extraShapes)];
  return colors.flatMap((color) =>
    kinds.flatMap((shape) =>
      isHeldOut({ color, shape })
        ? []
        : SIZE_NAMES.flatMap((size) => POSITION_NAMES.map((position) => ({ color, shape, size, position }))),
    ),
  );
}

/** Whether two shapes keep at least one white pixel between their bounding boxes whatever their jitter. */
function apart(a: SceneShape, b: SceneShape, canvas: number): boolean {
  const gap = (shapeSizePx(a.size, canvas) + shapeSizePx(b.size, canvas)) / 2 + 1 + 2 * JITTER_PX;
  const [ax, ay] = POSITIONS[a.position];
  const [bx, by] = POSITIONS[b.position];
  return Math.abs(ax - bx) * canvas >= gap || Math.abs(ay - by) * canvas >= gap;
}

/** Training scene i: its first shape cycles through the compositions (so any run of them covers all), the
 *  others are drawn at random among those that keep clear of every shape already placed. */
export function sceneItem(i: number, seed: number, canvas: number, o: SceneOptions): SceneShape[] {
  if (isDefaultScenes(o)) return [shapeItem(i, 'train', seed)];
  const list = sceneCompositions(o);
  const rng = rngFor(seed, 'shapes-scene', i);
  const jitter = () => ({
    dx: rng.int(2 * JITTER_PX + 1) - JITTER_PX,
    dy: rng.int(2 * JITTER_PX + 1) - JITTER_PX,
  });
  const shapes: SceneShape[] = [{ ...list[i % list.length]!, jitter: jitter() }];
  const want = 1 + rng.int(o.maxShapes);
  for (let tries = 0; shapes.length < want && tries < 64; tries++) {
    const c = list[rng.int(list.length)]!;
    if (shapes.every((s) => apart(s, c, canvas))) shapes.push({ ...c, jitter: jitter() });
  }
  return shapes;
}

/** Every caption of a scene, one per template: a single shape's are shapeCaptions'; several shapes are
 *  named one after the other in the same phrasing, joined by "and". */
export function sceneCaptions(shapes: readonly SceneShape[]): string[] {
  if (shapes.length === 1) return shapeCaptions(shapes[0]!);
  return CAPTION_TEMPLATES.map((t) => shapes.map((s) => t(s)).join(' and '));
}
