// `dalle bench quality`: the recipe experiments of the quality work, in one process.
//
// Trains the dVAE and then the transformer with the real Trainer classes and the real data pipeline (the
// spec's global batch; `--world W` simulates W ranks whose gradients go through PowerSGD as the spec
// says, on in-process groups), and prints the quality measurements over training time: for the dVAE
// codebook usage and held-out reconstruction accuracy (EMA and raw weights), for the transformer caption
// information (seen and held-out validation images) and the attribute accuracy of plain samples.
//
// `--set path=value` (repeatable) overrides one config field, the value parsed as JSON when it is JSON, so
// an experiment is a command line. The dVAE's EMA weights, tokenizer and encoded training set are cached in
// `--cache` under a hash of what determines them, so transformer experiments reuse one dVAE
// (docs/experiments/quality.md records what was run).
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { encodeItems } from '../activities/encode-dataset.ts';
import { dvaeProbe, transformerBatch } from '../activities/batches.ts';
import { PowerSgd, type Group } from '../collective/index.ts';
import { parseSets, presets, PresetName, resolveSpec, type RunSpec } from '../config/index.ts';
import { stagePowerSgd } from '../contract/index.ts';
import { loadBatch, openDataset, Tokenizer, trainTokenizer, type Dataset } from '../data/index.ts';
import {
  ATTRIBUTES,
  captionInformation,
  encodeValidation,
  measureDvae,
  sampleAccuracy,
  shapesReconstruction,
  shapesValidation,
  type SampleMiss,
} from '../eval/index.ts';
import {
  createDvaeTrainer,
  createTransformerTrainer,
  decodeState,
  Dvae,
  encodeState,
  initTfBackend,
  Transformer,
  type Trainer,
} from '../model/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { localGroups } from './lib/local-groups.ts';

export const cli = command({
  name: 'bench quality',
  summary: 'train the dVAE and the transformer in this process and print their quality over training time',
  options: {
    preset: { type: 'string', value: 'tiny|shapes', help: 'the preset (default shapes)' },
    set: {
      type: 'string',
      value: 'path=value',
      multiple: true,
      help: 'override one config field, e.g. dvae.lr=1e-3 (repeatable; JSON values parsed)',
    },
    stage: { type: 'string', value: 'all|dvae|transformer', help: 'what to train (default all)' },
    'dvae-every': { type: 'string', value: 'N', help: 'measure the dVAE every N steps (default 100)' },
    'transformer-every': {
      type: 'string',
      value: 'N',
      help: 'measure the transformer every N steps (default 100)',
    },
    samples: {
      type: 'string',
      value: 'N',
      help: 'sampled prompts per group, seen and held-out (default 24)',
    },
    world: {
      type: 'string',
      value: 'W',
      help: 'simulated ranks, through PowerSGD as the spec says (default 1)',
    },
    cache: {
      type: 'string',
      value: 'DIR',
      help: 'where trained dVAEs are cached (default $DALLE_HOME/quality-cache)',
    },
    'dvae-from': {
      type: 'string',
      value: 'file.bin',
      help: "a cached dVAE to use instead of training one: this config's dataset is encoded with it",
    },
    json: { type: 'boolean', help: 'one JSON object per line' },
  },
});

interface Options {
  preset: PresetName;
  overrides: Record<string, unknown>;
  stage: 'all' | 'dvae' | 'transformer';
  dvaeEvery: number;
  transformerEvery: number;
  samples: number;
  cache: string;
  json: boolean;
  /** Ranks simulated in this process (their gradients averaged by PowerSGD as the spec says). */
  world: number;
  /** A cached dVAE whose weights encode this config's dataset (no dVAE training). */
  dvaeFrom?: string;
}

function options(argv: string[]): Options {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  const overrides = parseSets(values.set ?? [], (m) => read.error(m));
  const shapesPresets = PresetName.options.filter(
    (p) => (presets[p].dataset as { kind: string }).kind === 'shapes',
  );
  return {
    preset: read.choice('preset', values.preset, shapesPresets) ?? 'shapes',
    overrides,
    stage: read.choice('stage', values.stage, ['all', 'dvae', 'transformer'] as const) ?? 'all',
    dvaeEvery: read.int('dvae-every', values['dvae-every'], 1) ?? 100,
    transformerEvery: read.int('transformer-every', values['transformer-every'], 1) ?? 100,
    samples: read.int('samples', values.samples, 1) ?? 24,
    world: read.int('world', values.world, 1) ?? 1,
    cache: values.cache ?? join(process.env.DALLE_HOME ?? '.dalle', 'quality-cache'),
    json: !!values.json,
    dvaeFrom: values['dvae-from'],
  };
}

type Emit = (event: string, fields: Record<string, unknown>) => void;

/** One data-parallel step of W simulated ranks: the ranks share one set of parameters (they would stay
 *  identical anyway), each computes the gradient of its slice, PowerSGD (per the spec, with its error
 *  feedback per rank) averages them over in-process groups, and the average is applied once. */
class DataParallel<B> {
  private readonly groups: Group[];
  private readonly psgd: PowerSgd[];

  constructor(
    readonly trainer: Trainer<B>,
    spec: RunSpec,
    stage: 'dvae' | 'transformer',
    readonly world: number,
  ) {
    this.groups = localGroups(world);
    const cfg = stagePowerSgd(spec, stage);
    this.psgd = this.groups.map(
      (_, rank) => new PowerSgd(trainer.paramSpecs(), cfg, { rank, worldSize: world, seed: spec.train.seed }),
    );
  }

  async step(batches: B[], step: number): Promise<{ loss: number; metrics: Record<string, number> }> {
    const g = batches.map((b, r) => this.trainer.computeGradients(b, step, r));
    const loss = g.reduce((s, x) => s + x.loss, 0) / this.world;
    if (this.world === 1) {
      return { loss, metrics: { ...g[0]!.metrics, ...this.trainer.applyGradients(g[0]!.grads, step, loss) } };
    }
    const r = await Promise.all(this.psgd.map((p, k) => p.reduce(this.groups[k]!, g[k]!.grads, step)));
    const bytes = { bytesRaw: r[0]!.stats.bytesRaw, bytesSent: r[0]!.stats.bytesSent };
    if (r[0]!.skipped) return { loss, metrics: { ...g[0]!.metrics, ...bytes, skipped: 1 } };
    return {
      loss,
      metrics: { ...g[0]!.metrics, ...bytes, ...this.trainer.applyGradients(r[0]!.grads, step, loss) },
    };
  }
}

async function rankBatches(
  ds: Dataset,
  spec: RunSpec,
  step: number,
  world: number,
  pipeline: 'dvae' | 'transformer',
) {
  return Promise.all(
    Array.from({ length: world }, (_, rank) =>
      loadBatch(ds, {
        seed: spec.train.seed,
        step,
        rank,
        worldSize: world,
        globalBatch: spec.train.batchSize,
        resolution: spec.dvae.resolution,
        pipeline,
      }),
    ),
  );
}

function shapesSeed(spec: RunSpec): number {
  if (spec.dataset.kind !== 'shapes') throw new Error('bench quality needs a shapes dataset');
  return spec.dataset.seed;
}

async function trainDvae(spec: RunSpec, o: Options, emit: Emit): Promise<Float32Array[]> {
  const cfg = spec.dvae;
  const ds = await openDataset(spec.dataset);
  const held = shapesValidation('heldOut', 108, cfg.resolution, shapesSeed(spec));
  const trainer = createDvaeTrainer(cfg, spec.train.seed, o.world, { probe: await dvaeProbe(spec, ds) });
  const dp = new DataParallel(trainer, spec, 'dvae', o.world);
  let trainSec = 0;
  const measure = (step: number, tau: number) => {
    for (const weights of ['ema', 'params'] as const) {
      const m = Dvae.fromParams(cfg, trainer.exportParams(weights));
      try {
        const q = measureDvae(m, held.images, {
          resolution: cfg.resolution,
          codebookSize: cfg.codebookSize,
          truth: held.truth,
        });
        // The soft-vs-hard gap: the same images through the relaxation the decoder trains on (at this
        // step's τ) instead of the argmax tokens.
        const relaxed =
          cfg.quantizer !== 'vq'
            ? shapesReconstruction(m.reconstructRelaxed(held.images, tau, step), held.truth!, cfg.resolution)
                .accuracy
            : undefined;
        emit('dvae', { step, weights, trainSeconds: +trainSec.toFixed(1), ...q, relaxed, tau });
      } finally {
        m.dispose();
      }
    }
  };
  for (let step = 0; step < cfg.steps; step++) {
    const t0 = performance.now();
    const bs = await rankBatches(ds, spec, step, o.world, 'dvae');
    const g = await dp.step(
      bs.map((b) => ({ images: b.images, n: b.n })),
      step,
    );
    trainSec += (performance.now() - t0) / 1000;
    if ((step + 1) % o.dvaeEvery === 0 || step + 1 === cfg.steps) {
      emit('dvae-train', { step: step + 1, loss: g.loss, ...g.metrics });
      measure(step + 1, g.metrics.tau!);
    }
  }
  const ema = trainer.exportParams('ema');
  trainer.dispose();
  return ema;
}

interface DvaeCache {
  params: Float32Array[];
  tokenizer: Tokenizer;
  tokens: Int32Array;
}

function cacheKey(spec: RunSpec, world: number): string {
  const what = {
    dataset: spec.dataset,
    dvae: spec.dvae,
    seed: spec.train.seed,
    batch: spec.train.batchSize,
    ...(world > 1 ? { world, powersgd: stagePowerSgd(spec, 'dvae') } : {}),
  };
  return createHash('sha256').update(JSON.stringify(what)).digest('hex').slice(0, 16);
}

async function buildCache(spec: RunSpec, params: Float32Array[], ds: Dataset): Promise<DvaeCache> {
  const dvae = Dvae.fromParams(spec.dvae, params);
  try {
    const tokens = await encodeItems(dvae, ds, spec, 0, ds.size);
    const tokenizer = await trainTokenizer(ds, spec.transformer.vocabSize);
    return { params, tokenizer, tokens };
  } finally {
    dvae.dispose();
  }
}

async function saveCache(file: string, c: DvaeCache): Promise<void> {
  const arrays: [string, Float32Array][] = c.params.map((a, i) => [`p${i}`, a]);
  arrays.push(['tokens', new Float32Array(c.tokens)]);
  const bytes = encodeState({ tokenizer: c.tokenizer.toJSON(), params: c.params.length }, arrays);
  await writeFile(file, bytes);
}

async function loadCache(file: string): Promise<DvaeCache | undefined> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(file));
  } catch {
    return undefined;
  }
  const { meta, arrays } = decodeState<{ tokenizer: unknown; params: number }>(bytes);
  return {
    params: Array.from({ length: meta.params }, (_, i) => arrays.get(`p${i}`)!),
    tokenizer: Tokenizer.fromJSON(meta.tokenizer),
    tokens: Int32Array.from(arrays.get('tokens')!),
  };
}

async function trainTransformer(spec: RunSpec, c: DvaeCache, o: Options, emit: Emit): Promise<void> {
  const ds = await openDataset(spec.dataset);
  const dvae = Dvae.fromParams(spec.dvae, c.params);
  const enc = { tokenizer: c.tokenizer, tokens: c.tokens, tokensPerImage: spec.dvae.grid ** 2 };
  const R = spec.dvae.resolution;
  const L = spec.transformer.textLen;
  const val = {
    seen: encodeValidation(shapesValidation('seen', 108, R, shapesSeed(spec)), dvae, c.tokenizer, L),
    heldOut: encodeValidation(shapesValidation('heldOut', 108, R, shapesSeed(spec)), dvae, c.tokenizer, L),
  };
  const trainer = createTransformerTrainer(spec.transformer, spec.dvae, spec.train.seed, o.world);
  const dp = new DataParallel(trainer, spec, 'transformer', o.world);
  let trainSec = 0;
  const measure = (step: number) => {
    for (const which of ['ema', 'params'] as const) {
      const t0 = performance.now();
      const model = Transformer.fromArrays(spec.transformer, spec.dvae, trainer.exportParams(which));
      try {
        const seen = captionInformation(model, val.seen.text, val.seen.image, val.seen.n);
        const heldOut = captionInformation(model, val.heldOut.text, val.heldOut.image, val.heldOut.n);
        const info = { seen: seen.information, heldOut: heldOut.information };
        // The validation image-token loss with the true caption: beside the training loss, it says whether
        // a plateau of the sample accuracy is the model overfitting its training images.
        const valLoss = { seen: seen.lossTrue, heldOut: heldOut.lossTrue };
        const infoSec = (performance.now() - t0) / 1000;
        const acc = sampleAccuracy({
          model,
          tokenizer: c.tokenizer,
          decode: (t) => dvae.decode(t),
          canvas: spec.dvae.resolution,
          n: o.samples,
        });
        emit('transformer', {
          step,
          weights: which,
          trainSeconds: +trainSec.toFixed(1),
          information: info,
          valLoss,
          infoSeconds: +infoSec.toFixed(2),
          seen: acc.seen,
          heldOut: acc.heldOut,
          misses: acc.misses,
          sampleSeconds: +acc.seconds.toFixed(2),
        });
      } finally {
        model.dispose();
      }
    }
  };
  for (let step = 0; step < spec.transformer.steps; step++) {
    const t0 = performance.now();
    const bs = await rankBatches(ds, spec, step, o.world, 'transformer');
    const g = await dp.step(
      bs.map((b) => transformerBatch(b, enc, spec)),
      step,
    );
    trainSec += (performance.now() - t0) / 1000;
    if ((step + 1) % o.transformerEvery === 0 || step + 1 === spec.transformer.steps) {
      emit('transformer-train', { step: step + 1, loss: g.loss, ...g.metrics });
      measure(step + 1);
    }
  }
  trainer.dispose();
  dvae.dispose();
}

/** "small shape triangle→circle ×3, large colour red→orange ×1, …": each miss by the asked size and the
 *  attributes read wrong, most frequent first ("nothing" when no figure was found). */
function missSummary(misses: SampleMiss[]): string {
  const counts = new Map<string, number>();
  for (const { asked, drawn } of misses) {
    const wrong = drawn
      ? ATTRIBUTES.filter((k) => drawn[k] !== asked[k])
          .map((k) => `${k} ${asked[k]}→${drawn[k]}`)
          .join(', ')
      : 'nothing';
    const key = `${asked.size} ${wrong}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  if (counts.size === 0) return 'none';
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k, v]) => `${k} ×${v}`)
    .join('; ');
}

function printer(json: boolean): Emit {
  const pct = (v: number) => `${(100 * v).toFixed(0)}%`;
  const acc = (a: Record<string, number>) =>
    `all ${pct(a.all!)} (c ${pct(a.color!)} s ${pct(a.shape!)} z ${pct(a.size!)} p ${pct(a.position!)})`;
  return (event, f) => {
    if (json) return void console.log(JSON.stringify({ event, ...f }));
    const s = f as Record<string, any>;
    if (event === 'dvae')
      console.log(
        `dvae ${s.step} ${s.weights} (${s.trainSeconds} s, ${(s.trainSeconds / s.step).toFixed(3)} s/step): codes ${s.codesUsed} ppl ${s.perplexity.toFixed(1)} mse ${s.mse.toFixed(4)} recon ${acc(s.shapes.accuracy)}${s.relaxed ? ` relaxed ${acc(s.relaxed)}` : ''} colours ${s.shapes.colorsDistinct}/6${lostColours(s.shapes.colorAccuracy)} [${s.seconds.toFixed(2)} s]`,
      );
    else if (event === 'transformer')
      console.log(
        `transformer ${s.step} ${s.weights} (${s.trainSeconds} s): info seen ${s.information.seen.toFixed(3)} held ${s.information.heldOut.toFixed(3)} val loss ${s.valLoss.seen.toFixed(3)} / ${s.valLoss.heldOut.toFixed(3)} | seen ${acc(s.seen)} | held ${acc(s.heldOut)} [${s.infoSeconds}+${s.sampleSeconds} s]\n  seen misses: ${missSummary(s.misses.seen)}`,
      );
    else
      console.log(`${event} ${JSON.stringify(f, (_, v) => (typeof v === 'number' ? +v.toPrecision(4) : v))}`);
  };
}

export async function main(argv: string[]): Promise<void> {
  const o = options(argv);
  const backend = await initTfBackend();
  const spec = resolveSpec({ ...o.overrides, preset: o.preset }, '--set');
  const emit = printer(o.json);
  emit('config', {
    backend,
    preset: o.preset,
    overrides: o.overrides,
    world: o.world,
    powersgd: o.world > 1 && stagePowerSgd(spec, o.stage === 'transformer' ? 'transformer' : 'dvae').enabled,
  });
  await mkdir(o.cache, { recursive: true });
  const key = cacheKey(spec, o.world) + (o.dvaeFrom ? `-from-${basename(o.dvaeFrom, '.bin')}` : '');
  const file = join(o.cache, `dvae-${key}.bin`);
  let cache = o.stage === 'dvae' ? undefined : await loadCache(file);
  if (!cache && o.dvaeFrom) {
    const from = await loadCache(o.dvaeFrom);
    if (!from) throw readers(cli).error(`--dvae-from ${o.dvaeFrom}: no cached dVAE there`);
    cache = await buildCache(spec, from.params, await openDataset(spec.dataset));
    await saveCache(file, cache);
    emit('cache', { file, from: o.dvaeFrom });
  }
  if (o.stage === 'transformer' && !cache)
    throw readers(cli).error(`no cached dVAE for this config at ${file}: run --stage dvae first`);
  if (!cache) {
    const params = await trainDvae(spec, o, emit);
    const t0 = performance.now();
    cache = await buildCache(spec, params, await openDataset(spec.dataset));
    await saveCache(file, cache);
    emit('cache', { file, seconds: +((performance.now() - t0) / 1000).toFixed(1) });
  } else emit('cache', { file, reused: true });
  if (o.stage !== 'dvae') await trainTransformer(spec, cache, o, emit);
}

/** " (orange 0 %, …)" for the colours whose reconstructions are mostly judged another colour, or "". */
function lostColours(perColour: Record<string, number>): string {
  const lost = Object.entries(perColour).filter(([, a]) => a <= 0.5);
  return lost.length ? ` (${lost.map(([c, a]) => `${c} ${Math.round(100 * a)} %`).join(', ')})` : '';
}
