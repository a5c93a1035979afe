// `dalle eval`: the evaluation (eval/) of a published model, sampled in this process from the bundle or over
// gRPC from a running sampler (`--server`): the zero-shot attribute table for a shapes model, and for any
// dataset the caption–image score of its reranker (generated vs real held-out images). Heavy modules (tfjs,
// sharp, grpc) are imported only on the path that needs them.
import { command, parseCommand, readers, type OptionValues } from './args.ts';
import { commands } from './commands.ts';
import {
  bundleDvae,
  bundleReranker,
  captionScores,
  EvalOptionError,
  evaluateShapes,
  formatCaptionScores,
  formatCurve,
  curveSettings,
  heldOutCurve,
  type CurveSetting,
  formatEvalTable,
  grpcGenerator,
  heldoutPairs,
  samplingModelGenerator,
  summary,
  type EvalReport,
  type CaptionScoreReport,
  type GenerateFn,
  type SamplingChoice,
} from '../../eval/index.ts';
import { HELD_OUT_COMPOSITIONS } from '../../data/shapes.ts';
import type { RunSpec } from '../../config/index.ts';
import type { ModelVersion } from '../../store/index.ts';

export const cli = command({
  name: 'eval',
  summary: commands.eval.summary,
  options: {
    model: { type: 'string', value: 'NAME', help: "the published model (default 'dalle')" },
    version: { type: 'string', value: 'V', help: 'its version (default the latest)' },
    server: {
      type: 'string',
      value: 'host:port',
      help: 'generate over gRPC from this sampler (default: in this process)',
    },
    store: {
      type: 'string',
      value: 'DIR',
      help: 'load the model from a local store folder (default: JetStream at NATS_URL)',
    },
    dataset: {
      type: 'string',
      value: 'PATH',
      help: "where the model's (non-shapes) dataset is on this machine (default: the path it was trained on)",
    },
    n: {
      type: 'string',
      value: 'N',
      help: `prompts per group (default ${HELD_OUT_COMPOSITIONS.length}: every held-out composition once)`,
    },
    seed: {
      type: 'string',
      value: 'S',
      help: 'seed of prompt choice, sampling and random tokens (default 0)',
    },
    temperature: { type: 'string', value: 'T', help: 'sampling temperature (default 1)' },
    'top-k': { type: 'string', value: 'K', help: 'keep the K most likely tokens (default 0: all)' },
    'guidance-scale': {
      type: 'string',
      value: 'S',
      help: 'classifier-free guidance scale (default 1: none); a comma list: the held-out curve',
    },
    candidates: {
      type: 'string',
      value: 'N',
      help: "sample N per image, keep the reranker's best (default 1); a comma list: the held-out curve",
    },
    json: { type: 'boolean', help: 'print the report as JSON' },
    details: { type: 'boolean', help: 'with --json: every judged image too' },
  },
  notes: [
    'A shapes model gets the zero-shot table (attributes judged from pixels); a model with a reranker, on any',
    'dataset, gets the caption–image score of generated vs real held-out images (the reranker as judge).',
    'Several --candidates or --guidance-scale values (1,4,16): held-out accuracy and time per image for each',
    'combination, on the same prompts and seeds.',
  ],
});

/** The model's generators, one per sampling choice: over gRPC with --server, else the bundle loaded once in
 *  this process. */
async function generators(
  values: { server?: string },
  info: ModelVersion,
  bundle: Uint8Array,
  cleanups: (() => void | Promise<void>)[],
): Promise<(choice: SamplingChoice) => Promise<GenerateFn>> {
  const { server } = values;
  if (server)
    return async (choice) => {
      const g = await grpcGenerator(server, { model: info.name, version: info.version, ...choice });
      cleanups.push(() => g.close());
      return g.generate;
    };
  const { loadBundleModel } = await import('../sampler/tf-engine.ts');
  const model = await loadBundleModel(bundle, { ...info });
  cleanups.push(() => model.dispose());
  return async (choice) => samplingModelGenerator(model, choice);
}

/** A comma list of guidance scales ≥ 0. */
function scales(read: ReturnType<typeof readers>, raw: string | undefined): number[] | undefined {
  return raw
    ?.split(',')
    .map((s) =>
      read.num('guidance-scale', s, (g) => g >= 0 && Number.isFinite(g), 'a comma list of numbers ≥ 0')!,
    );
}

/** `--candidates` or `--guidance-scale` with several values: held-out accuracy for each setting. */
async function printCurve(opts: {
  generatorFor: (choice: SamplingChoice) => Promise<GenerateFn>;
  base: SamplingChoice;
  settings: CurveSetting[];
  resolution: number;
  n: number;
  seed: number;
  json?: boolean;
  log: (line: string) => void;
}): Promise<void> {
  const points = await heldOutCurve({
    generatorFor: async (s) => ({ generate: await opts.generatorFor({ ...opts.base, ...s }) }),
    settings: opts.settings,
    resolution: opts.resolution,
    n: opts.n,
    seed: opts.seed,
    log: opts.log,
  });
  if (opts.json) console.log(JSON.stringify({ ...opts.base, seed: opts.seed, curve: points }));
  else
    console.log(`held-out compositions by sampling setting (seed ${opts.seed}):\n\n${formatCurve(points)}`);
}

/** The dataset the model was trained on, at --dataset when it moved. */
function datasetOf(spec: RunSpec, path: string | undefined): RunSpec['dataset'] {
  if (path === undefined) return spec.dataset;
  if (spec.dataset.kind === 'shapes')
    throw new EvalOptionError('dataset', path, 'a shapes model has no dataset path');
  return { ...spec.dataset, path };
}

/** The model store, read-only: a local folder, or JetStream at NATS_URL (with the NATS_* credentials). */
export async function openModels(dir: string | undefined) {
  const { openModelStore } = await import('../../store/index.ts');
  if (dir) return { models: await openModelStore({ dir }), closeNats: async () => {} };
  const { connectNats } = await import('../../security/nats.ts');
  const nc = await connectNats({ name: 'dalle-eval' });
  return { models: await openModelStore({ nc }, { readOnly: true }), closeNats: () => nc.drain() };
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, cli);
  const { name, version, n, seed, candidateList, scaleList, choice } = evalOptions(values);
  const curve = candidateList.length > 1 || scaleList.length > 1;
  const log = (line: string) => process.stderr.write(`eval: ${line}\n`);

  const { models, closeNats } = await openModels(values.store);
  const cleanups: (() => void | Promise<void>)[] = [];
  try {
    const { info, bundle } = await models.load(name, version);
    log(
      `model ${info.name} v${info.version} (${(info.bytes / 1e6).toFixed(1)} MB, ${JSON.stringify(info.meta)})`,
    );
    const dvae = await bundleDvae(bundle);
    cleanups.push(() => dvae.dispose());
    const reranker = await bundleReranker(bundle);
    if (reranker) cleanups.push(() => reranker.dispose());
    const ds = datasetOf(dvae.spec, values.dataset);
    if (ds.kind !== 'shapes' && !reranker)
      throw new EvalOptionError(
        'model',
        `${info.name} v${info.version}`,
        `was trained on a '${ds.kind}' dataset without a reranker: nothing here can judge its images (train with rerank.steps > 0)`,
      );
    const generatorFor = await generators(values, info, bundle, cleanups);
    log(
      values.server ? `generating over gRPC at ${values.server}` : 'generating in this process (no --server)',
    );
    if (curve) {
      if (ds.kind !== 'shapes')
        throw new EvalOptionError('candidates', values.candidates, 'a curve judges a shapes model only');
      const settings = curveSettings(candidateList, scaleList);
      await printCurve({
        generatorFor,
        base: choice,
        settings,
        resolution: dvae.resolution,
        n,
        seed,
        json: values.json,
        log,
      });
      return 0;
    }
    const generate = await generatorFor(choice);
    const shapes =
      ds.kind === 'shapes'
        ? await evaluateShapes({ generate, dvae, n, seed, datasetSeed: ds.seed, log })
        : undefined;
    let scores: (CaptionScoreReport & { split: 'heldout' | 'train' }) | undefined;
    if (reranker && n < 2) log('no caption–image score: it ranks captions against each other (--n ≥ 2)');
    else if (reranker) {
      const { pairs, split } = await heldoutPairs(ds, dvae.resolution, n, seed);
      scores = { split, ...(await captionScores({ generate, reranker, pairs, seed, log })) };
    }
    printEvaluation({ info, n, seed, choice, shapes, scores, json: values.json, details: values.details });
    return 0;
  } finally {
    for (const c of cleanups.reverse()) await c();
    await closeNats();
  }
}

/** The flags, read and checked: model, prompts, seed, and the sampling setting (or settings, for a curve). */
function evalOptions(values: OptionValues<typeof cli.options>) {
  const read = readers(cli);
  const candidateList = read.ints('candidates', values.candidates, 1) ?? [1];
  const scaleList = scales(read, values['guidance-scale']) ?? [1];
  const choice: SamplingChoice = {
    temperature: read.num('temperature', values.temperature, (t) => t > 0, 'a number > 0') ?? 1,
    topK: read.int('top-k', values['top-k'], 0) ?? 0,
    guidanceScale: scaleList[0]!,
    candidates: candidateList[0]!,
  };
  return {
    name: values.model ?? 'dalle',
    version: read.int('version', values.version, 1),
    n: read.int('n', values.n, 1) ?? HELD_OUT_COMPOSITIONS.length,
    seed: read.int('seed', values.seed, 0) ?? 0,
    candidateList,
    scaleList,
    choice,
  };
}

/** The evaluation as JSON (--json; every item with --details) or as tables. */
function printEvaluation(r: {
  info: { name: string; version: number };
  n: number;
  seed: number;
  choice: SamplingChoice;
  shapes: EvalReport | undefined;
  scores: (CaptionScoreReport & { split: 'heldout' | 'train' }) | undefined;
  json?: boolean;
  details?: boolean;
}): void {
  const { info, shapes, scores } = r;
  const model = { name: info.name, version: info.version };
  if (r.json) {
    const shapesOut = shapes && (r.details ? shapes : summary(shapes));
    console.log(JSON.stringify({ model, ...r.choice, ...shapesOut, captionScores: scores }));
    return;
  }
  const how = Object.entries(r.choice)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  console.log(
    `evaluation of ${info.name} v${info.version} (${r.n} prompts per group, seed ${r.seed}, ${how})\n`,
  );
  if (shapes) console.log(`${formatEvalTable(shapes)}\n`);
  if (scores) {
    const where = scores.split === 'heldout' ? 'held-out' : 'training (the dataset has no held-out split)';
    console.log(
      `caption–image score by the model's reranker, ${where} pairs:\n\n${formatCaptionScores(scores)}`,
    );
  }
}
