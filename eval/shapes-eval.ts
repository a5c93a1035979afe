// The zero-shot evaluation of a trained shapes model. Images are generated for captions of seen compositions
// and of the six held-out colour–shape pairs, and each image's colour, shape, size and position is judged
// from its pixels by data/shapes-analyzer.ts, which knows nothing of the model. Three reference rows keep
// the numbers honest: random image tokens through the same dVAE decoder (what "knows nothing about the
// caption" scores), the dVAE's own reconstructions of held-out and of seen images (the ceilings the decoder
// allows each group), and chance.
//
// `evaluateShapes` is a plain function over a `generate` function and the dVAE, so `dalle eval` and
// `dalle demo` run the same code whichever way the images are produced (generators.ts, bundle-dvae.ts).
import { analyzeShape, type ShapeAnalysis } from '../data/shapes-analyzer.ts';
import { rngFor } from '../random/index.ts';
import {
  CAPTION_TEMPLATES,
  COLOR_NAMES,
  HELD_OUT_COMPOSITIONS,
  POSITION_NAMES,
  renderShape,
  SHAPE_KINDS,
  shapeItem,
  SIZE_NAMES,
  TRAIN_COMPOSITIONS,
  type ShapeComposition,
  type ShapeSpec,
} from '../data/shapes.ts';

export const ATTRIBUTES = ['color', 'shape', 'size', 'position'] as const;
export type Attribute = (typeof ATTRIBUTES)[number];

/**
 * Images for captions: for each prompt, `n` RGB images packed [n, R, R, 3]. Prompt k must be drawn as a
 * gRPC request with seed (seed + k·n·N) mod 2^32 and num_images n draws it (N the candidates per image, 1
 * without reranking; see generators.ts `requestSeed`), so an evaluation is reproducible image by image.
 */
export type GenerateFn = (prompts: string[], n: number, seed: number) => Promise<Uint8Array[]>;

/** The model's dVAE, as the evaluation needs it. */
export interface EvalDvae {
  /** Image side R (= the shapes canvas). */
  resolution: number;
  /** Token grid side g and codebook size K, for the random-token baseline. */
  grid: number;
  codebookSize: number;
  /** Tokens [n, g²] → RGB [n, R, R, 3]. */
  decode(tokens: Int32Array, n: number): Uint8Array | Promise<Uint8Array>;
  /** RGB [n, R, R, 3] → encode (argmax tokens) → decode → RGB [n, R, R, 3]. */
  reconstruct(rgb: Uint8Array, n: number): Uint8Array | Promise<Uint8Array>;
}

export interface EvaluateOptions {
  generate: GenerateFn;
  dvae: EvalDvae;
  /** Prompts per group (seen, held-out, random); default 108 = every held-out composition once. */
  n?: number;
  /** Seed of prompt choice, sampling and random tokens (default 0). */
  seed?: number;
  /** Seed of the shapes set (jitter of the held-out images reconstructed); default 1234, the presets'. */
  datasetSeed?: number;
  /** Progress lines (what is being generated, how long it took). */
  log?: (line: string) => void;
}

export type GroupName = 'seen' | 'heldOut' | 'random' | 'reconstruction' | 'seenReconstruction';

export interface EvalItem {
  group: GroupName;
  /** The caption (random: the held-out caption it is judged against; reconstruction: the image's caption). */
  prompt: string;
  expected: ShapeComposition;
  /** The analyzer's verdict, null when it found no shape. */
  judged: Pick<ShapeAnalysis, Attribute | 'confidence' | 'purity'> | null;
  correct: Record<Attribute | 'all', boolean>;
}

export interface GroupScore {
  images: number;
  /** Share of images whose attribute matches the caption (an image with no shape counts as wrong). */
  accuracy: Record<Attribute | 'all', number>;
  /** Images in which the analyzer found no shape. */
  empty: number;
  /** Wall time to produce the group's images. */
  seconds: number;
}

export interface EvalReport {
  canvas: number;
  promptsPerGroup: number;
  seed: number;
  seen: GroupScore;
  /** Zero-shot: compositions whose colour–shape pair never appeared in training. */
  heldOut: GroupScore;
  /** Uniform random image tokens decoded by the same dVAE, judged against the held-out captions. */
  random: GroupScore;
  /** dVAE encode → decode of held-out ground-truth images, judged against their captions. */
  reconstruction: GroupScore;
  /** Mean squared error of those reconstructions, pixels scaled to [0, 1]. */
  reconstructionMse: number;
  /** dVAE encode → decode of one image of every seen composition (jittered as the plain training split is):
   *  the ceiling of the seen row. */
  seenReconstruction: GroupScore;
  /** Accuracy of guessing uniformly: 1/6, 1/3, 1/2, 1/9, and 1/324 for all four. */
  chance: Record<Attribute | 'all', number>;
  items: EvalItem[];
}

/** A bad argument to the evaluation (names the option and the rule). */
export class EvalOptionError extends Error {
  override name = 'EvalOptionError';
  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`eval ${option} = ${String(value)}: ${rule}`);
  }
}

/** The generator or the dVAE returned images of the wrong size. */
export class EvalImageError extends Error {
  override name = 'EvalImageError';
  constructor(
    readonly source: string,
    readonly got: number,
    readonly expected: number,
  ) {
    super(`eval: ${source} returned ${got} bytes, expected ${expected}`);
  }
}

export const CHANCE: Record<Attribute | 'all', number> = {
  color: 1 / COLOR_NAMES.length,
  shape: 1 / SHAPE_KINDS.length,
  size: 1 / SIZE_NAMES.length,
  position: 1 / POSITION_NAMES.length,
  all: 1 / (COLOR_NAMES.length * SHAPE_KINDS.length * SIZE_NAMES.length * POSITION_NAMES.length),
};

/** n compositions of a list: all of them in order while n covers the list, then a seeded draw of the rest,
 *  so every held-out composition is asked for once at the default n = 108. */
export function pickCompositions(
  list: readonly ShapeComposition[],
  n: number,
  seed: number,
  tag: string,
): ShapeComposition[] {
  const out: ShapeComposition[] = [];
  for (let round = 0; out.length < n; round++) {
    const order = list.map((_, i) => i);
    const rng = rngFor(seed, 'eval-pick', tag, round);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (const i of order.slice(0, n - out.length)) out.push(list[i]!);
  }
  return out;
}

/** The caption of prompt k: the set's templates in turn, so every phrasing is asked for. */
export function evalCaption(c: ShapeComposition, k: number): string {
  return CAPTION_TEMPLATES[k % CAPTION_TEMPLATES.length]!(c);
}

/** One image judged from its pixels against the composition its prompt names. */
export function judge(
  group: GroupName,
  prompt: string,
  expected: ShapeComposition,
  rgb: Uint8Array,
  canvas: number,
): EvalItem {
  const a = analyzeShape(rgb, canvas);
  const correct = {} as Record<Attribute | 'all', boolean>;
  for (const k of ATTRIBUTES) correct[k] = a !== null && a[k] === expected[k];
  correct.all = ATTRIBUTES.every((k) => correct[k]);
  const judged = a && {
    color: a.color,
    shape: a.shape,
    size: a.size,
    position: a.position,
    confidence: a.confidence,
    purity: a.purity,
  };
  return { group, prompt, expected, judged, correct };
}

function score(items: EvalItem[], seconds: number): GroupScore {
  const accuracy = {} as Record<Attribute | 'all', number>;
  for (const k of [...ATTRIBUTES, 'all'] as const)
    accuracy[k] = items.filter((i) => i.correct[k]).length / Math.max(1, items.length);
  return { images: items.length, accuracy, empty: items.filter((i) => i.judged === null).length, seconds };
}

function checkBytes(source: string, rgb: Uint8Array, n: number, R: number): void {
  if (!(rgb instanceof Uint8Array) || rgb.length !== n * R * R * 3)
    throw new EvalImageError(source, rgb?.length ?? 0, n * R * R * 3);
}

/** One image per composition (prompt k: its caption k, drawn as GenerateFn says with `seed`), judged. */
export async function generateAndJudge(
  generate: GenerateFn,
  group: 'seen' | 'heldOut',
  comps: ShapeComposition[],
  seed: number,
  R: number,
): Promise<{ items: EvalItem[]; score: GroupScore }> {
  const prompts = comps.map(evalCaption);
  const t0 = performance.now();
  const images = await generate(prompts, 1, seed);
  const seconds = (performance.now() - t0) / 1000;
  if (images.length !== prompts.length)
    throw new EvalImageError(`generate (${group}) image sets`, images.length, prompts.length);
  const items = comps.map((c, k) => {
    checkBytes(`generate (${group}) prompt ${k}`, images[k]!, 1, R);
    return judge(group, prompts[k]!, c, images[k]!, R);
  });
  return { items, score: score(items, seconds) };
}

/** Ground-truth renderings through the dVAE's encode → decode, judged against their compositions. */
async function reconstructAndJudge(
  dvae: EvalDvae,
  group: 'reconstruction' | 'seenReconstruction',
  specs: ShapeSpec[],
): Promise<{ items: EvalItem[]; score: GroupScore; mse: number }> {
  const R = dvae.resolution;
  const per = R * R * 3;
  const truth = new Uint8Array(specs.length * per);
  specs.forEach((s, i) => truth.set(renderShape(s, R), i * per));
  const t0 = performance.now();
  const rgb = await dvae.reconstruct(truth, specs.length);
  const seconds = (performance.now() - t0) / 1000;
  checkBytes(`dvae.reconstruct (${group})`, rgb, specs.length, R);
  let se = 0;
  for (let j = 0; j < truth.length; j++) se += ((truth[j]! - rgb[j]!) / 255) ** 2;
  const items = specs.map((s, k) =>
    judge(group, evalCaption(s, k), s, rgb.subarray(k * per, (k + 1) * per), R),
  );
  return { items, score: score(items, seconds), mse: se / truth.length };
}

/** Runs the evaluation; see the file header. */
export async function evaluateShapes(opts: EvaluateOptions): Promise<EvalReport> {
  const n = opts.n ?? HELD_OUT_COMPOSITIONS.length;
  const seed = opts.seed ?? 0;
  const datasetSeed = opts.datasetSeed ?? 1234;
  const log = opts.log ?? (() => undefined);
  if (!(Number.isInteger(n) && n >= 1)) throw new EvalOptionError('n', n, 'must be a positive integer');
  if (!(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32))
    throw new EvalOptionError('seed', seed, 'must be an integer in [0, 2^32)');
  const { dvae } = opts;
  const R = dvae.resolution;
  const per = R * R * 3;
  const items: EvalItem[] = [];

  // Seen and held-out: one image per prompt; the held-out prompts come second with seeds after the seen ones.
  const groups: ['seen' | 'heldOut', ShapeComposition[]][] = [
    ['seen', pickCompositions(TRAIN_COMPOSITIONS, n, seed, 'seen')],
    ['heldOut', pickCompositions(HELD_OUT_COMPOSITIONS, n, seed, 'heldout')],
  ];
  const scores = {} as Record<GroupName, GroupScore>;
  for (const [g, comps] of groups) {
    const judged = await generateAndJudge(
      opts.generate,
      g,
      comps,
      (seed + (g === 'seen' ? 0 : n)) % 2 ** 32,
      R,
    );
    items.push(...judged.items);
    scores[g] = judged.score;
    log(
      `${g}: ${n} images in ${judged.score.seconds.toFixed(1)} s, all-four accuracy ${(100 * judged.score.accuracy.all).toFixed(1)}%`,
    );
  }

  // Random baseline: uniform tokens, judged against the held-out prompts.
  {
    const cells = dvae.grid * dvae.grid;
    const tokens = new Int32Array(n * cells);
    const rng = rngFor(seed, 'eval-random-tokens');
    for (let i = 0; i < tokens.length; i++) tokens[i] = rng.int(dvae.codebookSize);
    const t0 = performance.now();
    const rgb = await dvae.decode(tokens, n);
    const seconds = (performance.now() - t0) / 1000;
    checkBytes('dvae.decode (random tokens)', rgb, n, R);
    const comps = groups[1]![1];
    const mine = comps.map((c, k) =>
      judge('random', evalCaption(c, k), c, rgb.subarray(k * per, (k + 1) * per), R),
    );
    items.push(...mine);
    scores.random = score(mine, seconds);
  }

  // Reconstruction: every held-out image of the dataset (its jitter included) through encode → decode, and
  // one image of every seen composition.
  const heldOutRec = await reconstructAndJudge(
    dvae,
    'reconstruction',
    HELD_OUT_COMPOSITIONS.map((_, i) => shapeItem(i, 'heldout', datasetSeed)),
  );
  const seenRec = await reconstructAndJudge(
    dvae,
    'seenReconstruction',
    TRAIN_COMPOSITIONS.map((_, i) => shapeItem(i, 'train', datasetSeed)),
  );
  items.push(...heldOutRec.items, ...seenRec.items);

  return {
    canvas: R,
    promptsPerGroup: n,
    seed,
    seen: scores.seen,
    heldOut: scores.heldOut,
    random: scores.random,
    reconstruction: heldOutRec.score,
    reconstructionMse: heldOutRec.mse,
    seenReconstruction: seenRec.score,
    chance: CHANCE,
    items,
  };
}

/** The report as a Markdown table (what `dalle eval` prints and `dalle demo` puts in report.md). */
export function formatEvalTable(r: EvalReport): string {
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  const row = (label: string, s: Pick<GroupScore, 'accuracy'> & Partial<GroupScore>) =>
    `| ${label} | ${s.images ?? '–'} | ${[...ATTRIBUTES, 'all' as const].map((k) => pct(s.accuracy[k])).join(' | ')} | ${s.empty ?? '–'} |`;
  return [
    '| images judged | n | color | shape | size | position | all four | no shape found |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    row('seen compositions', r.seen),
    row('held-out compositions (zero-shot)', r.heldOut),
    row('random image tokens (baseline)', r.random),
    row('dVAE reconstruction of held-out images', r.reconstruction),
    row('dVAE reconstruction of seen images', r.seenReconstruction),
    row('chance', { accuracy: r.chance }),
    '',
    `dVAE reconstruction MSE on the ${r.reconstruction.images} held-out images (pixels in [0, 1]): ${r.reconstructionMse.toFixed(5)}`,
  ].join('\n');
}

/** The report without the per-image items (what `--json` prints unless `--details`). */
export function summary(r: EvalReport): Omit<EvalReport, 'items'> {
  const { items: _items, ...rest } = r;
  return rest;
}
