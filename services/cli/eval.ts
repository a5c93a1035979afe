// `dalle eval`: the zero-shot evaluation of a trained shapes model (issue #9 part 2). Images are generated
// for captions of seen compositions and of the six held-out colour–shape pairs, and each image's colour,
// shape, size and position is judged from its pixels by data/shapes-analyzer.ts, which knows nothing of
// the model. Three reference rows keep the numbers honest: random image tokens through the same dVAE
// decoder (what "knows nothing about the caption" scores), the dVAE's own reconstructions of held-out
// images (the ceiling the decoder allows), and chance.
//
// `evaluateShapes` is a plain function over a `generate` function and the dVAE, so `dalle demo` runs it
// in-process; `run` wires it to a published model: sampled in this process from the bundle (the sampler's
// own model code, services/sampler/tf-engine.ts) or over gRPC from a running sampler (`--server`).
// Heavy modules (tfjs, sharp, grpc) are imported only on the path that needs them.
import { parse, UsageError } from './args.ts';
import { analyzeShape, type ShapeAnalysis } from '../../data/shapes-analyzer.ts';
import { rngFor } from '../../data/rng.ts';
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
} from '../../data/shapes.ts';

export const ATTRIBUTES = ['color', 'shape', 'size', 'position'] as const;
export type Attribute = (typeof ATTRIBUTES)[number];

/**
 * Images for captions: for each prompt, `n` RGB images packed [n, R, R, 3]. Image i of prompt k must be
 * drawn with seed (seed + k·n + i) mod 2^32 (what a gRPC request with seed + k·n and num_images n does),
 * so an evaluation is reproducible image by image.
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

export type GroupName = 'seen' | 'heldOut' | 'random' | 'reconstruction';

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

function judge(
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
  const groups: [GroupName, ShapeComposition[]][] = [
    ['seen', pickCompositions(TRAIN_COMPOSITIONS, n, seed, 'seen')],
    ['heldOut', pickCompositions(HELD_OUT_COMPOSITIONS, n, seed, 'heldout')],
  ];
  const scores = {} as Record<GroupName, GroupScore>;
  for (const [g, comps] of groups) {
    const prompts = comps.map(evalCaption);
    const t0 = performance.now();
    const images = await opts.generate(prompts, 1, (seed + (g === 'seen' ? 0 : n)) % 2 ** 32);
    const seconds = (performance.now() - t0) / 1000;
    if (images.length !== prompts.length)
      throw new EvalImageError(`generate (${g}) image sets`, images.length, prompts.length);
    const mine = comps.map((c, k) => {
      checkBytes(`generate (${g}) prompt ${k}`, images[k]!, 1, R);
      return judge(g, prompts[k]!, c, images[k]!, R);
    });
    items.push(...mine);
    scores[g] = score(mine, seconds);
    log(
      `${g}: ${n} images in ${seconds.toFixed(1)} s, all-four accuracy ${(100 * scores[g].accuracy.all).toFixed(1)}%`,
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

  // Reconstruction: every held-out image of the dataset (its jitter included) through encode → decode.
  let mse: number;
  {
    const m = HELD_OUT_COMPOSITIONS.length;
    const specs = Array.from({ length: m }, (_, i) => shapeItem(i, 'heldout', datasetSeed));
    const truth = new Uint8Array(m * per);
    specs.forEach((s, i) => truth.set(renderShape(s, R), i * per));
    const t0 = performance.now();
    const rgb = await dvae.reconstruct(truth, m);
    const seconds = (performance.now() - t0) / 1000;
    checkBytes('dvae.reconstruct', rgb, m, R);
    let se = 0;
    for (let j = 0; j < truth.length; j++) se += ((truth[j]! - rgb[j]!) / 255) ** 2;
    mse = se / truth.length;
    const mine = specs.map((s, k) =>
      judge('reconstruction', evalCaption(s, k), s, rgb.subarray(k * per, (k + 1) * per), R),
    );
    items.push(...mine);
    scores.reconstruction = score(mine, seconds);
  }

  return {
    canvas: R,
    promptsPerGroup: n,
    seed,
    seen: scores.seen,
    heldOut: scores.heldOut,
    random: scores.random,
    reconstruction: scores.reconstruction,
    reconstructionMse: mse,
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

// ---- wiring to a published model -----------------------------------------------------------------------

/** Sampling parameters both generators pass on. */
export interface SamplingChoice {
  temperature?: number;
  topK?: number;
  topP?: number;
}

/** A GenerateFn over the sampler's own SamplingModel (services/sampler/engine.ts), in this process: rows
 *  are batched `batch` at a time into one KV-cache session, as the server batches concurrent requests. */
export function samplingModelGenerator(
  model: import('../sampler/engine.ts').SamplingModel,
  opts: SamplingChoice & { batch?: number } = {},
): GenerateFn {
  const batch = opts.batch ?? 32;
  return async (prompts, n, seed) => {
    const R = model.facts.resolution;
    const texts = prompts.map((p) => model.encodePrompt(p));
    const rows = prompts.flatMap((_, k) =>
      Array.from({ length: n }, (_, i) => ({ k, i, seed: (seed + k * n + i) % 2 ** 32 })),
    );
    const out = prompts.map(() => new Uint8Array(n * R * R * 3));
    for (let r0 = 0; r0 < rows.length; r0 += batch) {
      const chunk = rows.slice(r0, r0 + batch);
      const session = model.start(
        chunk.map((r) => ({
          text: texts[r.k]!,
          seed: r.seed,
          temperature: opts.temperature ?? 1,
          topK: opts.topK ?? 0,
          topP: opts.topP ?? 1,
        })),
      );
      try {
        const tokens = new Int32Array(chunk.length * session.tokensPerRow);
        while (!session.done)
          for (const { row, result } of session.step()) tokens.set(result.tokens, row * session.tokensPerRow);
        const rgb = model.decode(tokens, chunk.length);
        chunk.forEach((r, j) =>
          out[r.k]!.set(rgb.subarray(j * R * R * 3, (j + 1) * R * R * 3), r.i * R * R * 3),
        );
      } finally {
        session.dispose();
      }
      // Let timers and I/O run between batches (progress lines, a gRPC server in the same process).
      await new Promise((res) => setImmediate(res));
    }
    return out;
  };
}

/** A GenerateFn that calls `Generate` on a running sampler (`host:port`) through the sampler's client
 *  (services/sampler/client.ts), `concurrency` requests in flight so the server can batch them.
 *  Returns the generator and a `close` for its channel. */
export async function grpcGenerator(
  address: string,
  opts: SamplingChoice & { model?: string; version?: number; concurrency?: number; deadlineMs?: number } = {},
): Promise<{ generate: GenerateFn; close(): void }> {
  const { createSamplerClient, generate: call } = await import('../sampler/client.ts');
  const { decodeImage } = await import('../../data/image.ts');
  const client = createSamplerClient(address);
  const one = async (prompt: string, n: number, seed: number): Promise<Uint8Array> => {
    const res = await call(
      client,
      {
        prompt,
        numImages: n,
        seed: BigInt(seed),
        temperature: opts.temperature,
        topK: opts.topK,
        topP: opts.topP,
        model: opts.model ? { name: opts.model, version: opts.version } : undefined,
      },
      { deadline: Date.now() + (opts.deadlineMs ?? 600_000), keepProgress: false },
    );
    if (res.images.length !== n)
      throw new EvalImageError(`Generate '${prompt}' images`, res.images.length, n);
    const images = [...res.images].sort((a, b) => a.index - b.index);
    const decoded = await Promise.all(
      images.map((im) => decodeImage(im.png, `Generate image ${im.index} of '${prompt}'`)),
    );
    const per = decoded[0]!.rgb.length;
    const out = new Uint8Array(n * per);
    decoded.forEach((d, i) => out.set(d.rgb, i * per));
    return out;
  };
  const generate: GenerateFn = async (prompts, n, seed) => {
    const out: Uint8Array[] = new Array(prompts.length);
    let next = 0;
    const lanes = Array.from({ length: Math.min(opts.concurrency ?? 8, prompts.length) }, async () => {
      for (let k = next++; k < prompts.length; k = next++)
        out[k] = await one(prompts[k]!, n, (seed + k * n) % 2 ** 32);
    });
    await Promise.all(lanes);
    return out;
  };
  return { generate, close: () => client.close() };
}

/** The dVAE of a published bundle, for reconstruction and the random-token baseline. */
export async function bundleDvae(
  bundle: Uint8Array,
): Promise<EvalDvae & { spec: import('../../config/index.ts').RunSpec; dispose(): void }> {
  const { initBackend } = await import('../../model/backend.ts');
  const { Dvae, dvaeParamSpecs } = await import('../../model/dvae.ts');
  const { decodeState, expectArrays } = await import('../../model/state-io.ts');
  const { decodeBundle } = await import('../../store/bundle.ts');
  await initBackend();
  const b = decodeBundle(bundle);
  const specs = dvaeParamSpecs(b.spec.dvae);
  const { arrays } = decodeState(b.dvae);
  expectArrays(
    arrays,
    specs.map((s) => [s.name, s.shape.reduce((x, y) => x * y, 1)] as const),
  );
  return {
    ...dvaeAdapter(
      Dvae.fromParams(
        b.spec.dvae,
        specs.map((s) => arrays.get(s.name)!),
      ),
    ),
    spec: b.spec,
  };
}

/** EvalDvae over a model/dvae.ts Dvae (owned: `dispose` releases it). */
export function dvaeAdapter(d: import('../../model/dvae.ts').Dvae): EvalDvae & { dispose(): void } {
  return {
    resolution: d.cfg.resolution,
    grid: d.cfg.grid,
    codebookSize: d.cfg.codebookSize,
    decode: (tokens) => d.decode(tokens),
    reconstruct: (rgb) => d.decode(d.encode(rgb)),
    dispose: () => d.dispose(),
  };
}

const USAGE =
  'dalle eval [--model NAME] [--version V] [--server host:port | --store DIR] [--n N] [--seed S] [--temperature T] [--top-k K] [--json] [--details]';

function intOption(name: string, raw: string | undefined, dflt: number, min: number): number {
  if (raw === undefined) return dflt;
  const v = Number(raw);
  if (!(Number.isInteger(v) && v >= min))
    throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${raw}'\nusage: ${USAGE}`);
  return v;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      model: { type: 'string' },
      version: { type: 'string' },
      server: { type: 'string' },
      store: { type: 'string' },
      n: { type: 'string' },
      seed: { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      json: { type: 'boolean' },
      details: { type: 'boolean' },
    },
    USAGE,
  );
  if (positionals.length > 0)
    throw new UsageError(`unexpected argument '${positionals[0]}'\nusage: ${USAGE}`);
  const name = values.model ?? 'dalle';
  const version = values.version === undefined ? undefined : intOption('version', values.version, 1, 1);
  const n = intOption('n', values.n, HELD_OUT_COMPOSITIONS.length, 1);
  const seed = intOption('seed', values.seed, 0, 0);
  const topK = intOption('top-k', values['top-k'], 0, 0);
  const temperature = values.temperature === undefined ? 1 : Number(values.temperature);
  if (!(Number.isFinite(temperature) && temperature > 0))
    throw new UsageError(`--temperature must be a number > 0, got '${values.temperature}'`);
  const log = (line: string) => process.stderr.write(`eval: ${line}\n`);

  // The bundle: from a local store folder, or from JetStream at NATS_URL.
  const { openStores } = await import('../../store/index.ts');
  let closeNats = async () => {};
  let stores;
  if (values.store) {
    stores = await openStores({ dir: values.store });
  } else {
    const { connect } = await import('nats');
    const { serviceEnv } = await import('../../infra/services.ts');
    const nc = await connect({ servers: serviceEnv().natsUrl, name: 'dalle-eval' });
    closeNats = () => nc.drain();
    stores = await openStores({ nc });
  }
  const cleanups: (() => void | Promise<void>)[] = [];
  try {
    const { info, bundle } = await stores.models.load(name, version);
    log(
      `model ${info.name} v${info.version} (${(info.bytes / 1e6).toFixed(1)} MB, ${JSON.stringify(info.meta)})`,
    );
    const dvae = await bundleDvae(bundle);
    cleanups.push(() => dvae.dispose());
    const ds = dvae.spec.dataset;
    if (ds.kind !== 'shapes') {
      throw new EvalOptionError(
        'model',
        `${info.name} v${info.version}`,
        `was trained on a '${ds.kind}' dataset; the evaluation judges shapes-set images only`,
      );
    }
    let generate: GenerateFn;
    if (values.server) {
      const g = await grpcGenerator(values.server, { model: name, version: info.version, temperature, topK });
      cleanups.push(() => g.close());
      generate = g.generate;
      log(`generating over gRPC at ${values.server}`);
    } else {
      const { loadBundleModel } = await import('../sampler/tf-engine.ts');
      const model = await loadBundleModel(bundle, {
        name: info.name,
        version: info.version,
        createdAt: info.createdAt,
      });
      cleanups.push(() => model.dispose());
      generate = samplingModelGenerator(model, { temperature, topK });
      log('generating in this process (no --server)');
    }
    const report = await evaluateShapes({ generate, dvae, n, seed, datasetSeed: ds.seed, log });
    if (values.json) {
      console.log(
        JSON.stringify({
          model: { name: info.name, version: info.version },
          temperature,
          topK,
          ...(values.details ? report : summary(report)),
        }),
      );
    } else {
      console.log(
        `zero-shot evaluation of ${info.name} v${info.version} (${n} prompts per group, seed ${seed}, temperature ${temperature}${topK ? `, top-k ${topK}` : ''})\n`,
      );
      console.log(formatEvalTable(report));
    }
    return 0;
  } finally {
    for (const c of cleanups.reverse()) await c();
    await closeNats();
  }
}
