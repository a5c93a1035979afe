// `dalle bench transformer [--json] [--preset shapes] [--backends tensorflow,wasm,cpu] [--batch 8]
//                          [--steps 3] [--rows 4]`
//
// Stage 2's speed on every backend that starts here, in one process and one run:
//   - training: steps/s, tokens/s (batch · (textLen + grid²) per step) and achieved GFLOP/s from
//     `transformerFlopsPerSequence` (forward + backward ≈ 3 × forward matmul FLOPs), for the real
//     Trainer (computeGradients + applyGradients, AdamW and all);
//   - sampling: image tokens/s for `rows` rows with the KV cache and with the cache-free reference,
//     and their ratio;
//   - the same backend's 512² float32 matmul GFLOP/s, so the step's GFLOP/s reads as a fraction of
//     what the backend can do.
// Figures only, never pass/fail: the machines are shared and noisy, so quote ratios from one run.
import { loadSpec } from '../config/index.ts';
import {
  createSampler,
  createTransformerTrainer,
  initTransformerParams,
  type SampleRow,
  sampleWithoutCache,
  type TfBackendName,
  tfBackendNames,
  Transformer,
  transformerFlopsPerSequence,
  transformerParameterCount,
} from '../model/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { availableTfBackends } from './lib/tf-backends.ts';
import { matmulGflops } from './lib/matmul.ts';

export const cli = command({
  name: 'bench transformer',
  summary: "stage 2's training and sampling speed on every tfjs backend that starts here",
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    preset: { type: 'string', value: 'tiny|shapes', help: 'the preset (default shapes)' },
    backends: {
      type: 'string',
      value: 'list',
      help: `comma list of ${tfBackendNames.join(', ')} (default all)`,
    },
    batch: { type: 'string', value: 'B', help: 'sequences per training step (default 8)' },
    steps: { type: 'string', value: 'N', help: 'timed training steps (default 3)' },
    rows: { type: 'string', value: 'N', help: 'rows sampled at once (default 4)' },
  },
});

interface Options {
  json: boolean;
  preset: 'tiny' | 'shapes';
  backends: TfBackendName[];
  batch: number;
  steps: number;
  rows: number;
}

function options(argv: string[]): Options {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  return {
    json: !!values.json,
    preset: read.choice('preset', values.preset, ['tiny', 'shapes'] as const) ?? 'shapes',
    backends: read.choices('backends', values.backends, tfBackendNames) ?? [...tfBackendNames],
    batch: read.int('batch', values.batch, 1) ?? 8,
    steps: read.int('steps', values.steps, 1) ?? 3,
    rows: read.int('rows', values.rows, 1) ?? 4,
  };
}

export interface BackendFigures {
  backend: string;
  matmulGflops: number;
  trainStepsPerSec: number;
  trainTokensPerSec: number;
  trainGflops: number;
  /** Achieved step GFLOP/s over the same backend's matmul GFLOP/s. */
  trainFractionOfMatmul: number;
  sampleTokensPerSecCached: number;
  sampleTokensPerSecUncached: number;
  cacheSpeedup: number;
}

function measure(o: Options, backend: string): BackendFigures {
  const spec = loadSpec(o.preset);
  const cfg = spec.transformer;
  const L = cfg.textLen;
  const N = spec.dvae.grid ** 2;
  const matmul = matmulGflops();

  // Training: the real trainer on a fixed synthetic batch (captions of varying length, any token grid).
  const batch = {
    n: o.batch,
    text: Int32Array.from({ length: o.batch * L }, (_, k) =>
      k % L < 4 + (((k / L) | 0) % (L - 3)) ? 1 + ((7 * k) % (cfg.vocabSize - 1)) : 0,
    ),
    image: Int32Array.from(
      { length: o.batch * N },
      (_, k) => (13 * k + ((k / N) | 0)) % spec.dvae.codebookSize,
    ),
  };
  const trainer = createTransformerTrainer(cfg, spec.dvae, 0, 1);
  const once = (step: number) => {
    const g = trainer.computeGradients(batch, step, 0);
    trainer.applyGradients(g.grads, step, g.loss);
  };
  once(0); // warm-up
  const t0 = performance.now();
  for (let s = 1; s <= o.steps; s++) once(s);
  const stepSec = (performance.now() - t0) / 1000 / o.steps;
  const params = trainer.exportParams('params');
  trainer.dispose();
  const flops = transformerFlopsPerSequence(cfg, spec.dvae).train * o.batch;

  // Sampling: a model with the trained-for-a-few-steps weights (the speed does not depend on them).
  const model = Transformer.fromArrays(
    cfg,
    spec.dvae,
    params.length ? params : initTransformerParams(cfg, spec.dvae, 0),
  );
  const rows: SampleRow[] = Array.from({ length: o.rows }, (_, k) => ({
    text: batch.text.slice((k % o.batch) * L, ((k % o.batch) + 1) * L),
    seed: k,
  }));
  const warm = createSampler(model).start(rows);
  warm.step();
  warm.step();
  warm.dispose();
  let t1 = performance.now();
  const session = createSampler(model).start(rows);
  while (!session.done) session.step();
  const cachedSec = (performance.now() - t1) / 1000;
  t1 = performance.now();
  sampleWithoutCache(model, rows);
  const uncachedSec = (performance.now() - t1) / 1000;
  model.dispose();

  const trainGflops = flops / stepSec / 1e9;
  const cached = (o.rows * N) / cachedSec;
  const uncached = (o.rows * N) / uncachedSec;
  return {
    backend,
    matmulGflops: matmul,
    trainStepsPerSec: 1 / stepSec,
    trainTokensPerSec: (o.batch * (L + N)) / stepSec,
    trainGflops,
    trainFractionOfMatmul: trainGflops / matmul,
    sampleTokensPerSecCached: cached,
    sampleTokensPerSecUncached: uncached,
    cacheSpeedup: cached / uncached,
  };
}

export async function main(argv: string[]): Promise<void> {
  const o = options(argv);
  const spec = loadSpec(o.preset);
  const results: BackendFigures[] = [];
  const skipped: Record<string, string> = {};
  for await (const got of availableTfBackends(o.backends, skipped)) {
    if (!o.json) process.stderr.write(`bench transformer: measuring ${got}…\n`);
    results.push(measure(o, got));
  }
  const summary = {
    preset: o.preset,
    parameters: transformerParameterCount(spec.transformer, spec.dvae),
    batch: o.batch,
    steps: o.steps,
    sampleRows: o.rows,
    sequence: { textLen: spec.transformer.textLen, imageTokens: spec.dvae.grid ** 2 },
    backends: results,
    skipped,
  };
  if (o.json) {
    console.log(JSON.stringify(summary));
    return;
  }
  const f = (x: number, d = 2) => x.toFixed(d);
  console.log(
    `transformer bench: preset ${o.preset} (${summary.parameters.toLocaleString('en-US')} parameters), batch ${o.batch} × ` +
      `${spec.transformer.textLen + spec.dvae.grid ** 2} tokens, ${o.steps} timed steps; sampling ${o.rows} rows × ${spec.dvae.grid ** 2} image tokens`,
  );
  for (const r of results) {
    console.log(`  ${r.backend}`);
    console.log(`    matmul 512²             ${f(r.matmulGflops)} GFLOP/s`);
    console.log(
      `    training                ${f(r.trainStepsPerSec, 3)} steps/s, ${f(r.trainTokensPerSec, 0)} tokens/s, ${f(r.trainGflops)} GFLOP/s (${f(100 * r.trainFractionOfMatmul, 0)}% of matmul)`,
    );
    console.log(`    sampling, KV cache      ${f(r.sampleTokensPerSecCached, 1)} tokens/s`);
    console.log(
      `    sampling, no cache      ${f(r.sampleTokensPerSecUncached, 1)} tokens/s  (cache ×${f(r.cacheSpeedup, 1)})`,
    );
  }
  for (const [b, why] of Object.entries(skipped)) console.log(`  ${b}: skipped (${why})`);
}
