// `dalle bench generate [--json] [--preset shapes] [--images 32] [--levels 1,4,16] [--store dir --model name]`
//
// The sampling service end to end over a loopback gRPC server in this process:
//   - time to first image: one Generate (1 image) on a warm server, call → first Image event;
//   - images/s at concurrency 1, 4 and 16: C clients each sending 1-image Generate calls back to back
//     until `images` images came back; the gain over concurrency 1 is what batched token steps buy
//     (concurrent requests share one forward pass per token); forward passes and rows per pass are shown;
//   - the KV-cache speedup: image tokens/s sampling `rows` rows with the cache (model/sampling.ts) and
//     with the cache-free reference (model/sampling-reference.ts), same rows, same tokens.
// The model is the preset's architecture with initial weights (speed does not depend on training) and a
// tokenizer trained on the shapes captions, packed as a real bundle; or a published one (--store/--model).
// Figures only, never pass/fail: the machines are shared and noisy, so quote ratios from one run.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSpec, type RunSpec } from '../config/index.ts';
import { ShapesDataset } from '../data/shapes-dataset.ts';
import { trainTokenizer } from '../data/tokenizer.ts';
import {
  createSampler,
  dvaeParamSpecs,
  encodeState,
  initDvaeParams,
  initTfBackend,
  initTransformerParams,
  type SampleRow,
  sampleWithoutCache,
  Transformer,
  transformerParamSpecs,
} from '../model/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { createSamplerClient, generate } from '../services/sampler/client.ts';
import { SamplerService } from '../services/sampler/server.ts';
import type { StepEvent } from '../services/sampler/scheduler.ts';
import { decodeBundle, encodeBundle, openStores } from '../store/index.ts';

export const cli = command({
  name: 'bench generate',
  summary: 'the sampler over gRPC: images/s and latency at concurrency levels, KV-cache speedup',
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    preset: {
      type: 'string',
      value: 'tiny|shapes|cub',
      help: 'architecture of a fresh bundle (default shapes)',
    },
    images: { type: 'string', value: 'N', help: 'images per concurrency level (default 32)' },
    levels: { type: 'string', value: 'C,…', help: 'concurrency levels (default 1,4,16)' },
    rows: { type: 'string', value: 'N', help: 'rows of the KV-cache comparison (default 4)' },
    store: { type: 'string', value: 'dir', help: 'a store folder with a published model (with --model)' },
    model: { type: 'string', value: 'name', help: 'the published model to serve (with --store)' },
  },
});

interface Options {
  json: boolean;
  preset: 'tiny' | 'shapes' | 'cub';
  images: number;
  levels: number[];
  rows: number;
  store?: string;
  model?: string;
}

function options(argv: string[]): Options {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  if (Boolean(values.store) !== Boolean(values.model))
    throw read.error('give --store and --model both (a published model) or neither (a fresh bundle)');
  return {
    json: !!values.json,
    preset: read.choice('preset', values.preset, ['tiny', 'shapes', 'cub'] as const) ?? 'shapes',
    images: read.int('images', values.images, 1) ?? 32,
    levels: read.ints('levels', values.levels, 1) ?? [1, 4, 16],
    rows: read.int('rows', values.rows, 1) ?? 4,
    store: values.store,
    model: values.model,
  };
}

/** A bundle of the preset's architecture with initial weights and a tokenizer trained on shapes captions. */
async function initBundle(spec: RunSpec): Promise<Uint8Array> {
  const shapes =
    spec.dataset.kind === 'shapes'
      ? spec.dataset
      : { kind: 'shapes' as const, count: 256, canvas: 32, seed: 1234 };
  const tokenizer = await trainTokenizer(new ShapesDataset(shapes, 'train'), spec.transformer.vocabSize);
  const tSpecs = transformerParamSpecs(spec.transformer, spec.dvae);
  const tArrays = initTransformerParams(spec.transformer, spec.dvae, spec.train.seed);
  const dSpecs = dvaeParamSpecs(spec.dvae);
  const dArrays = initDvaeParams(spec.dvae, spec.train.seed);
  return encodeBundle({
    spec,
    tokenizer: tokenizer.toJSON(),
    dvae: encodeState(
      { stage: 'dvae', bench: 'init' },
      dSpecs.map((s, i) => [s.name, dArrays[i]!] as const),
    ),
    transformer: encodeState(
      { stage: 'transformer', bench: 'init' },
      tSpecs.map((s, i) => [s.name, tArrays[i]!] as const),
    ),
    meta: { bench: 'generate', weights: 'init' },
  });
}

interface Level {
  concurrency: number;
  images: number;
  seconds: number;
  imagesPerSec: number;
  /** Forward passes run, and mean rows per pass. */
  forwardPasses: number;
  rowsPerPass: number;
  meanLatencyMs: number;
}

type Client = ReturnType<typeof createSamplerClient>;

/** A sampler on a loopback port serving the published model (`--store/--model`) or a fresh bundle. */
async function serve(o: Options) {
  const dir = mkdtempSync(join(tmpdir(), 'bench-generate-'));
  const { models } = await openStores({ dir: o.store ?? dir });
  const name = o.model ?? 'bench';
  let bundle: Uint8Array;
  if (o.model) {
    bundle = (await models.load(o.model)).bundle;
  } else {
    bundle = await initBundle(loadSpec(o.preset));
    await models.publish(name, bundle, { preset: o.preset });
  }
  const steps: StepEvent[] = [];
  const svc = new SamplerService({
    store: models,
    defaultModel: name,
    log: () => {},
    scheduler: {
      maxConcurrent: Math.max(16, ...o.levels),
      maxQueue: 1024,
      maxBatchRows: Math.max(64, ...o.levels),
    },
    observer: { onStep: (e) => steps.push(e) },
  });
  const port = await svc.listen('127.0.0.1:0');
  await svc.registry.waitForServing(1, 120_000);
  const client = createSamplerClient(`127.0.0.1:${port}`);
  return { dir, name, bundle, steps, svc, client };
}

/** One warm-up request, then the median of three single-image requests. */
async function timeToFirstImage(client: Client) {
  // Warm-up: first-call kernel setup is not what a running service pays.
  await generate(client, { prompt: 'a large red circle', numImages: 1, seed: 0n });
  const firsts = [];
  for (let i = 1; i <= 3; i++)
    firsts.push(await generate(client, { prompt: 'a small blue square', numImages: 1, seed: BigInt(i) }));
  return firsts.sort((a, b) => a.firstImageMs! - b.firstImageMs!)[1]!; // the median of 3
}

/** `images` single-image requests from `c` concurrent callers; the forward passes the scheduler ran. */
async function concurrencyLevel(
  client: Client,
  c: number,
  images: number,
  steps: StepEvent[],
): Promise<Level> {
  const before = steps.length;
  let issued = 0;
  const latencies: number[] = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: c }, async (_, k) => {
      while (issued < images) {
        const seed = issued++;
        const a = performance.now();
        await generate(
          client,
          {
            prompt: k % 2 ? 'a green triangle' : 'a large yellow circle',
            numImages: 1,
            seed: BigInt(seed),
          },
          { keepProgress: false },
        );
        latencies.push(performance.now() - a);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const passes = steps.slice(before);
  return {
    concurrency: c,
    images: latencies.length,
    seconds,
    imagesPerSec: latencies.length / seconds,
    forwardPasses: passes.length,
    rowsPerPass: passes.reduce((s, p) => s + p.rows, 0) / Math.max(1, passes.length),
    meanLatencyMs: latencies.reduce((a, b) => a + b, 0) / latencies.length,
  };
}

/** KV cache vs the cache-free reference, on the model itself (same rows, same random numbers). */
async function kvCacheComparison(bundle: Uint8Array, rowCount: number) {
  const b = decodeBundle(bundle);
  const tArrays = (await import('../model/index.ts')).decodeState(b.transformer).arrays;
  const model = Transformer.fromArrays(
    b.spec.transformer,
    b.spec.dvae,
    transformerParamSpecs(b.spec.transformer, b.spec.dvae).map((s) => tArrays.get(s.name)!),
  );
  try {
    const text = new Int32Array(b.spec.transformer.textLen);
    text.set([3, 5, 7, 9].map((t) => t % b.spec.transformer.vocabSize || 1));
    const rows: SampleRow[] = Array.from({ length: rowCount }, (_, i) => ({ text, seed: 7, index: i }));
    const time = (f: () => Int32Array[]) => {
      const t0 = performance.now();
      const out = f();
      return { out, s: (performance.now() - t0) / 1000 };
    };
    const cached = time(() => {
      const s = createSampler(model).start(rows);
      while (!s.done) s.step();
      const out = rows.map((_, i) => s.tokens(i));
      s.dispose();
      return out;
    });
    const uncached = time(() => sampleWithoutCache(model, rows));
    const tokens = rowCount * b.spec.dvae.grid ** 2;
    return {
      cached: tokens / cached.s,
      uncached: tokens / uncached.s,
      speedup: uncached.s / cached.s,
      identical: cached.out.every((t, i) => t.every((x, j) => x === uncached.out[i]![j])),
    };
  } finally {
    model.dispose();
  }
}

export async function main(argv: string[]): Promise<void> {
  const o = options(argv);
  const backend = await initTfBackend();
  const say = (s: string) => {
    if (!o.json) console.log(s);
  };
  const { dir, name, bundle, steps, svc, client } = await serve(o);
  const spec = decodeBundle(bundle).spec;
  const grid2 = spec.dvae.grid ** 2;
  say(
    `bench generate: model ${name} (${spec.preset}: ${spec.dvae.resolution}² px, ${grid2} image tokens, ${spec.transformer.layers} layers × d ${spec.transformer.dModel}), backend ${backend}`,
  );
  try {
    const first = await timeToFirstImage(client);
    const ttfi = first.firstImageMs!;
    say(
      `  time to first image (1 image, warm, median of 3): ${ttfi.toFixed(0)} ms (sample ${first.done.timings!.sampleMs.toFixed(0)} ms, decode+png ${first.done.timings!.decodeMs.toFixed(0)} ms)`,
    );
    const levels: Level[] = [];
    for (const c of o.levels) {
      const level = await concurrencyLevel(client, c, o.images, steps);
      levels.push(level);
      say(
        `  concurrency ${String(c).padStart(2)}: ${level.imagesPerSec.toFixed(2)} images/s (${level.images} in ${level.seconds.toFixed(1)} s, ` +
          `${level.forwardPasses} forward passes, ${level.rowsPerPass.toFixed(1)} rows/pass, mean latency ${level.meanLatencyMs.toFixed(0)} ms)`,
      );
    }
    const base = levels.find((l) => l.concurrency === 1)?.imagesPerSec;
    const gains = Object.fromEntries(levels.map((l) => [l.concurrency, base ? l.imagesPerSec / base : null]));
    if (base)
      say(
        `  batching gain vs concurrency 1: ${levels.map((l) => `×${(l.imagesPerSec / base).toFixed(2)} at ${l.concurrency}`).join(', ')}`,
      );
    const kv = await kvCacheComparison(bundle, o.rows);
    say(
      `  KV cache: ${kv.cached.toFixed(0)} image tokens/s vs ${kv.uncached.toFixed(0)} without (×${kv.speedup.toFixed(2)}, ${o.rows} rows × ${grid2} tokens; same tokens: ${kv.identical})`,
    );
    if (o.json) {
      console.log(
        JSON.stringify({
          bench: 'generate',
          backend,
          model: {
            name,
            preset: spec.preset,
            resolution: spec.dvae.resolution,
            imageTokens: grid2,
            layers: spec.transformer.layers,
            dModel: spec.transformer.dModel,
          },
          timeToFirstImageMs: ttfi,
          levels,
          batchingGain: gains,
          kvCache: {
            rows: o.rows,
            tokensPerSecCached: kv.cached,
            tokensPerSecUncached: kv.uncached,
            speedup: kv.speedup,
            identicalTokens: kv.identical,
          },
        }),
      );
    }
  } finally {
    client.close();
    await svc.shutdown(5_000);
    rmSync(dir, { recursive: true, force: true });
  }
}
