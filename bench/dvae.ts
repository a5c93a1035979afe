// `dalle bench dvae [--json] [--preset shapes] [--backends tensorflow,wasm,cpu] [--batch 16] [--steps 3]`
//
// Stage 1's training speed on every backend that starts here, in one process and one run:
//   - the real Trainer step (computeGradients + applyGradients: Gumbel noise, forward, backward,
//     AdamW, EMA) on rendered shapes: steps/s, images/s, and achieved GFLOP/s counted as
//     3 × forward conv FLOPs (backward ≈ 2 × forward) from `dvaeForwardMacs`;
//   - the same backend's float32 matmul GFLOP/s (512²), so the step's GFLOP/s reads as a fraction of
//     what the backend can do;
//   - encode (argmax tokens) images/s, the path encodeDataset takes.
// Figures only, never pass/fail: the machines are shared and noisy, so quote ratios from one run.
import { loadSpec } from '../config/index.ts';
import { renderShape, shapeItem } from '../data/shapes.ts';
import {
  createDvaeTrainer,
  Dvae,
  dvaeForwardMacs,
  dvaeParameterCount,
  type TfBackendName,
  tfBackendNames,
} from '../model/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { availableTfBackends } from './lib/tf-backends.ts';
import { matmulGflops } from './lib/matmul.ts';

export const cli = command({
  name: 'bench dvae',
  summary: "stage 1's training speed (steps/s, images/s, GFLOP/s vs matmul) on every tfjs backend here",
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    preset: { type: 'string', value: 'tiny|shapes', help: 'the preset (default shapes)' },
    backends: {
      type: 'string',
      value: 'list',
      help: `comma list of ${tfBackendNames.join(', ')} (default all)`,
    },
    batch: { type: 'string', value: 'B', help: "images per step (default: the preset's per-rank batch)" },
    steps: { type: 'string', value: 'N', help: 'timed steps (default 3)' },
  },
});

interface Options {
  json: boolean;
  preset: 'tiny' | 'shapes';
  backends: TfBackendName[];
  /** Images per step (default: the preset's per-rank batch). */
  batch?: number;
  steps: number;
}

function options(argv: string[]): Options {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  return {
    json: !!values.json,
    preset: read.choice('preset', values.preset, ['tiny', 'shapes'] as const) ?? 'shapes',
    backends: read.choices('backends', values.backends, tfBackendNames) ?? [...tfBackendNames],
    batch: read.int('batch', values.batch, 1),
    steps: read.int('steps', values.steps, 1) ?? 3,
  };
}

export interface DvaeBackendFigures {
  backend: string;
  /** Images per step and timed steps on this backend (the cpu backend gets a smaller run, see below). */
  batch: number;
  steps: number;
  matmulGflops: number;
  stepsPerSec: number;
  imagesPerSec: number;
  gflops: number;
  /** Achieved step GFLOP/s over the same backend's matmul GFLOP/s. */
  fractionOfMatmul: number;
  /** Median seconds of one step, and the slowest, over the timed steps. */
  stepSecMedian: number;
  stepSecMax: number;
  encodeImagesPerSec: number;
}

/** `n` rendered training-split shapes at the preset's resolution, as one uint8 batch. */
function shapesBatch(n: number, res: number, offset: number): Uint8Array {
  const out = new Uint8Array(n * res * res * 3);
  for (let i = 0; i < n; i++)
    out.set(renderShape(shapeItem(offset + i, 'train', 1234), res), i * res * res * 3);
  return out;
}

/** tfjs's cpu Conv2DBackpropFilter is a per-element loop (~2 min for one shapes step of 16 images on
 *  this machine): measure it on a small run rather than hold the whole benchmark hostage. */
const CPU_LIMITS = { batch: 2, steps: 1 };

function measure(o: Options, backend: string, requestedBatch: number): DvaeBackendFigures {
  const cfg = loadSpec(o.preset).dvae;
  const batch = backend === 'cpu' ? Math.min(requestedBatch, CPU_LIMITS.batch) : requestedBatch;
  const steps = backend === 'cpu' ? Math.min(o.steps, CPU_LIMITS.steps) : o.steps;
  const R = cfg.resolution;
  const matmul = matmulGflops();
  // Its first batch doubles as the probe of codebook splitting (dvae.codeSplitEvery), a run's training images.
  const trainer = createDvaeTrainer(cfg, 0, 1, { probe: shapesBatch(batch, R, 0) });
  const once = (step: number) => {
    const g = trainer.computeGradients({ images: shapesBatch(batch, R, step * batch), n: batch }, step, 0);
    trainer.applyGradients(g.grads, step, g.loss);
  };
  once(0); // warm-up: kernel setup, JIT, wasm memory growth
  const times: number[] = [];
  for (let s = 1; s <= steps; s++) {
    const t0 = performance.now();
    once(s);
    times.push((performance.now() - t0) / 1000);
  }
  const ema = Dvae.fromParams(cfg, trainer.exportParams('ema'));
  trainer.dispose();
  const images = shapesBatch(batch, R, 0);
  ema.encode(images);
  const t1 = performance.now();
  ema.encode(images);
  const encodeSec = (performance.now() - t1) / 1000;
  ema.dispose();

  const stepSec = times.reduce((a, b) => a + b, 0) / times.length;
  const sorted = [...times].sort((a, b) => a - b);
  const gflops = (3 * 2 * dvaeForwardMacs(cfg) * batch) / stepSec / 1e9;
  return {
    backend,
    batch,
    steps,
    matmulGflops: matmul,
    stepsPerSec: 1 / stepSec,
    imagesPerSec: batch / stepSec,
    gflops,
    fractionOfMatmul: gflops / matmul,
    stepSecMedian: sorted[Math.floor(sorted.length / 2)]!,
    stepSecMax: sorted[sorted.length - 1]!,
    encodeImagesPerSec: batch / encodeSec,
  };
}

export async function main(argv: string[]): Promise<void> {
  const o = options(argv);
  const spec = loadSpec(o.preset);
  const batch = o.batch ?? spec.train.batchSize / spec.train.worldSize;
  const results: DvaeBackendFigures[] = [];
  const skipped: Record<string, string> = {};
  for await (const got of availableTfBackends(o.backends, skipped)) {
    if (!o.json) process.stderr.write(`bench dvae: measuring ${got}…\n`);
    results.push(measure(o, got, batch));
  }
  const summary = {
    preset: o.preset,
    parameters: dvaeParameterCount(spec.dvae),
    /** Training FLOPs of one image (3 × forward). */
    trainFlopsPerImage: 3 * 2 * dvaeForwardMacs(spec.dvae),
    batch,
    steps: o.steps,
    resolution: spec.dvae.resolution,
    grid: spec.dvae.grid,
    backends: results,
    skipped,
  };
  if (o.json) {
    console.log(JSON.stringify(summary));
    return;
  }
  const f = (x: number, d = 2) => x.toFixed(d);
  console.log(
    `dvae bench: preset ${o.preset} (${summary.parameters.toLocaleString('en-US')} parameters, ` +
      `${spec.dvae.resolution}² → ${spec.dvae.grid}² tokens of ${spec.dvae.codebookSize}), batch ${batch}, ` +
      `${o.steps} timed steps, ${f(summary.trainFlopsPerImage / 1e6, 1)} MFLOP per training image`,
  );
  for (const r of results) {
    console.log(
      `  ${r.backend}${r.batch !== batch || r.steps !== o.steps ? ` (batch ${r.batch}, ${r.steps} timed step${r.steps > 1 ? 's' : ''})` : ''}`,
    );
    console.log(`    matmul 512²     ${f(r.matmulGflops)} GFLOP/s`);
    console.log(
      `    training        ${f(r.stepsPerSec, 3)} steps/s, ${f(r.imagesPerSec, 1)} images/s, ${f(r.gflops)} GFLOP/s ` +
        `(${f(100 * r.fractionOfMatmul, 0)}% of matmul); step median ${f(r.stepSecMedian, 3)} s, max ${f(r.stepSecMax, 3)} s`,
    );
    console.log(`    encode          ${f(r.encodeImagesPerSec, 1)} images/s`);
  }
  for (const [b, why] of Object.entries(skipped)) console.log(`  ${b}: skipped (${why})`);
}
