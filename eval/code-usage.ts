// Whether the codes a held-out image needs were ever training targets. The transformer can only emit a code
// in a context like those it was trained on, so for each held-out composition this counts, over the
// foreground cells of its images encoded by the dVAE, the codes that never appeared on a training image's
// foreground, those that did but never in an image of this colour, and those seen with the colour but never
// in an image of this shape. High first two shares: the codebook is what stops zero-shot (the code the image
// needs is colour-specific and that colour never drew it); low ones: every code exists with its colour, and
// what is missing is the transformer putting them in the held-out shape's layout.
import { BACKGROUND, type SceneShape } from '../data/shapes.ts';

/** One rendered single-shape image (any training colour or kind) and the dVAE's tokens for it. */
export interface EncodedShape {
  /** Position and jitter are only read by `shiftEntropy`. */
  composition: Pick<SceneShape, 'color' | 'shape' | 'size'> &
    Partial<Pick<SceneShape, 'position' | 'jitter'>>;
  /** RGB [R, R, 3], as rendered (not reconstructed). */
  rgb: Uint8Array;
  /** Row-major token grid [g, g]. */
  tokens: Int32Array;
}

export interface HeldOutCodeUse {
  /** "colour shape size" */
  composition: string;
  /** Foreground cells over all of this composition's images. */
  cells: number;
  /** Shares of those cells whose code: never on a training foreground cell … */
  unseen: number;
  /** … on one, but never in a training image of this colour … */
  unseenWithColour: number;
  /** … with the colour, but never in a training image of this shape. */
  unseenWithShape: number;
}

export interface CodeUsage {
  /** Distinct codes on training foreground cells. */
  trainCodes: number;
  /** codesByColours[k − 1]: codes used with exactly k colours in training. */
  codesByColours: number[];
  heldOut: HeldOutCodeUse[];
}

/** Grid cells holding at least one pixel that is not the background (the images are renderings). */
function foregroundCells(rgb: Uint8Array, canvas: number, grid: number): boolean[] {
  if (canvas % grid !== 0)
    throw new RangeError(`code usage: canvas ${canvas} is not a multiple of grid ${grid}`);
  const [br, bg, bb] = BACKGROUND;
  const cell = canvas / grid;
  const out = new Array<boolean>(grid * grid).fill(false);
  for (let y = 0; y < canvas; y++)
    for (let x = 0; x < canvas; x++) {
      const o = 3 * (y * canvas + x);
      if (rgb[o] !== br || rgb[o + 1] !== bg || rgb[o + 2] !== bb)
        out[Math.floor(y / cell) * grid + Math.floor(x / cell)] = true;
    }
  return out;
}

function checkTokens(img: EncodedShape, grid: number): void {
  if (img.tokens.length !== grid * grid)
    throw new RangeError(`code usage: ${img.tokens.length} tokens for a ${grid}×${grid} grid`);
}

export function codeUsage(
  train: readonly EncodedShape[],
  heldOut: readonly EncodedShape[],
  canvas: number,
  grid: number,
): CodeUsage {
  if (canvas % grid !== 0)
    throw new RangeError(`code usage: canvas ${canvas} is not a multiple of grid ${grid}`);
  const used = new Map<number, { colours: Set<string>; shapes: Set<string> }>();
  for (const img of train) {
    checkTokens(img, grid);
    const fg = foregroundCells(img.rgb, canvas, grid);
    fg.forEach((on, c) => {
      if (!on) return;
      const code = img.tokens[c]!;
      const u = used.get(code) ?? { colours: new Set<string>(), shapes: new Set<string>() };
      u.colours.add(img.composition.color);
      u.shapes.add(img.composition.shape);
      used.set(code, u);
    });
  }
  const maxColours = Math.max(0, ...[...used.values()].map((u) => u.colours.size));
  const codesByColours = Array.from(
    { length: maxColours },
    (_, k) => [...used.values()].filter((u) => u.colours.size === k + 1).length,
  );
  const rows = new Map<string, { cells: number; unseen: number; colour: number; shape: number }>();
  for (const img of heldOut) {
    checkTokens(img, grid);
    const { color, shape, size } = img.composition;
    const key = `${color} ${shape} ${size}`;
    const row = rows.get(key) ?? { cells: 0, unseen: 0, colour: 0, shape: 0 };
    foregroundCells(img.rgb, canvas, grid).forEach((on, c) => {
      if (!on) return;
      const u = used.get(img.tokens[c]!);
      row.cells++;
      if (!u) row.unseen++;
      else if (!u.colours.has(color)) row.colour++;
      else if (!u.shapes.has(shape)) row.shape++;
    });
    rows.set(key, row);
  }
  const share = (k: number, n: number) => (n ? k / n : 0);
  return {
    trainCodes: used.size,
    codesByColours,
    heldOut: [...rows.entries()]
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([composition, r]) => ({
        composition,
        cells: r.cells,
        unseen: share(r.unseen, r.cells),
        unseenWithColour: share(r.colour, r.cells),
        unseenWithShape: share(r.shape, r.cells),
      })),
  };
}

export interface ShiftEntropy {
  /** Images measured (those with a position and a jitter). */
  images: number;
  /** Mean over cells of H(code | cell, composition), nats: what one cell's code leaves open when the caption
   *  is known but not the shift of the figure's centre. */
  perCellGivenComposition: number;
  /** The same given the shift as well (0 when the dVAE encodes like images alike). */
  perCellGivenShift: number;
  /** Mean over compositions of log(distinct shifts seen): the most one whole image leaves open, nats. */
  perImageShifts: number;
}

/** How much of a training image's token grid depends on the ±px shift of its figure, from the training
 *  set's own counts. A caption fixes the colour, kind, size and place; the shift is the only thing left, so
 *  per image at most log(shifts) nats are open. When perCellGivenComposition × cells is far above that,
 *  the shift moves codes in many cells at once: a transformer must read it from the codes it has drawn
 *  and keep every later cell consistent with it, and one that predicts each cell from the caption alone
 *  mixes shifts within one figure (at temperature 1, a small figure's cells then disagree). */
export function shiftEntropy(train: readonly EncodedShape[]): ShiftEntropy {
  const imgs = train.filter(
    (t) => t.composition.position !== undefined && t.composition.jitter !== undefined,
  );
  const comp = (t: EncodedShape) => {
    const c = t.composition;
    return `${c.color} ${c.shape} ${c.size} ${c.position}`;
  };
  const shift = (t: EncodedShape) => `${t.composition.jitter!.dx},${t.composition.jitter!.dy}`;
  /** Mean over cells of H(code | cell, key(image)). */
  const entropy = (key: (t: EncodedShape) => string): number => {
    const counts = new Map<string, Map<number, number>>();
    let cells = 0;
    for (const t of imgs)
      t.tokens.forEach((code, c) => {
        const k = `${c}|${key(t)}`;
        const m = counts.get(k) ?? new Map<number, number>();
        m.set(code, (m.get(code) ?? 0) + 1);
        counts.set(k, m);
        cells++;
      });
    let h = 0;
    for (const m of counts.values()) {
      let total = 0;
      for (const v of m.values()) total += v;
      for (const v of m.values()) h -= v * Math.log(v / total);
    }
    return cells ? h / cells : 0;
  };
  const shifts = new Map<string, Set<string>>();
  for (const t of imgs) shifts.set(comp(t), (shifts.get(comp(t)) ?? new Set()).add(shift(t)));
  let logShifts = 0;
  for (const s of shifts.values()) logShifts += Math.log(s.size);
  return {
    images: imgs.length,
    perCellGivenComposition: entropy(comp),
    perCellGivenShift: entropy((t) => `${comp(t)}|${shift(t)}`),
    perImageShifts: shifts.size ? logShifts / shifts.size : 0,
  };
}
