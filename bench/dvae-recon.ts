// `dalle bench dvae-recon [--json] [--preset shapes] [--steps N] [--batch B] [--out grid.png]`
//
// How well the preset's dVAE reconstructs what it never saw: trains the real Trainer (one rank, the
// current backend) on the data pipeline's batches for N steps (default: the preset's dvae.steps), then
// encodes the 108 held-out shape compositions to argmax tokens and decodes them, as encodeDataset and
// the sampler do. Prints held-out MSE (params and EMA) against the code-free baseline (the mean
// training image), codes used, wall time, and writes a PNG grid: originals over reconstructions.
// Figures only, never pass/fail.
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadSpec } from '../config/index.ts';
import {
  encodePng,
  HELD_OUT_COMPOSITIONS,
  loadBatch,
  openDataset,
  renderShape,
  shapeItem,
} from '../data/index.ts';
import { createDvaeTrainer, Dvae, initTfBackend } from '../model/index.ts';
import { dvaeProbe } from '../activities/batches.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';

export const cli = command({
  name: 'bench dvae-recon',
  summary: "how well the preset's dVAE reconstructs the held-out shapes after a preset-length training",
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    preset: { type: 'string', value: 'tiny|shapes', help: 'the preset (default shapes)' },
    steps: { type: 'string', value: 'N', help: "training steps (default: the preset's dvae.steps)" },
    batch: { type: 'string', value: 'B', help: "images per step (default: the preset's batch)" },
    out: {
      type: 'string',
      value: 'file.png',
      help: 'the PNG grid: originals over reconstructions (default in tmp)',
    },
  },
});

interface Options {
  json: boolean;
  preset: 'tiny' | 'shapes';
  steps?: number;
  batch?: number;
  out: string;
}

function options(argv: string[]): Options {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  return {
    json: !!values.json,
    preset: read.choice('preset', values.preset, ['tiny', 'shapes'] as const) ?? 'shapes',
    steps: read.int('steps', values.steps, 1),
    batch: read.int('batch', values.batch, 1),
    out: values.out ?? join(tmpdir(), 'dalle-dvae-recon.png'),
  };
}

function mse(a: Uint8Array, b: Uint8Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += ((a[i]! - b[i]!) / 255) ** 2;
  return s / a.length;
}

/** Originals (row 0) over reconstructions (row 1) of `cols` evenly spread images, 2 px white gutters. */
function grid(
  rows: Uint8Array[],
  n: number,
  R: number,
  cols: number,
): { rgb: Uint8Array; width: number; height: number } {
  const width = cols * (R + 2);
  const height = rows.length * (R + 2);
  const rgb = new Uint8Array(width * height * 3).fill(255);
  for (let c = 0; c < cols; c++) {
    const idx = Math.floor((c * n) / cols);
    rows.forEach((src, row) => {
      for (let y = 0; y < R; y++) {
        const from = (idx * R + y) * R * 3;
        rgb.set(src.subarray(from, from + R * 3), ((row * (R + 2) + 1 + y) * width + c * (R + 2) + 1) * 3);
      }
    });
  }
  return { rgb, width, height };
}

type Spec = ReturnType<typeof loadSpec>;

/** Trains the dVAE for `steps` steps of `batch` images, summing the training images for the baseline. */
async function train(spec: Spec, steps: number, batch: number, quiet: boolean) {
  const cfg = spec.dvae;
  const R = cfg.resolution;
  const ds = await openDataset(spec.dataset);
  const trainer = createDvaeTrainer(cfg, spec.train.seed, 1, { probe: await dvaeProbe(spec, ds) });
  const mean = new Float64Array(R * R * 3);
  let seen = 0;
  let last: Record<string, number> = {};
  const t0 = performance.now();
  for (let step = 0; step < steps; step++) {
    const b = await loadBatch(ds, {
      seed: spec.train.seed,
      step,
      rank: 0,
      worldSize: 1,
      globalBatch: batch,
      resolution: R,
      pipeline: 'dvae',
    });
    for (let i = 0; i < b.images.length; i++) mean[i % mean.length]! += b.images[i]!;
    seen += b.n;
    const g = trainer.computeGradients({ images: b.images, n: b.n }, step, 0);
    trainer.applyGradients(g.grads, step, g.loss);
    last = g.metrics;
    if (!quiet && (step + 1) % 50 === 0) {
      process.stderr.write(
        `  step ${step + 1}/${steps}: loss ${g.loss.toFixed(3)}, mse ${g.metrics.mse!.toFixed(4)}, codes ${(g.metrics.usage! * cfg.codebookSize).toFixed(0)}\n`,
      );
    }
  }
  const meanImage = Uint8Array.from(mean, (v) => Math.round(v / seen));
  return { trainer, meanImage, last, trainSeconds: (performance.now() - t0) / 1000 };
}

/** The held-out compositions through the trained dVAE (parameters and EMA), against the mean image. */
function judgeHeldOut(spec: Spec, trainer: ReturnType<typeof createDvaeTrainer>, meanImage: Uint8Array) {
  if (spec.dataset.kind !== 'shapes') throw readers(cli).error('--preset needs a shapes dataset');
  const cfg = spec.dvae;
  const R = cfg.resolution;
  const n = HELD_OUT_COMPOSITIONS.length;
  const held = new Uint8Array(n * R * R * 3);
  for (let i = 0; i < n; i++)
    held.set(renderShape(shapeItem(i, 'heldout', spec.dataset.seed), R), i * R * R * 3);
  const baseline = mse(
    held,
    Uint8Array.from({ length: held.length }, (_, i) => meanImage[i % meanImage.length]!),
  );
  const judge = (which: 'params' | 'ema') => {
    const m = Dvae.fromParams(cfg, trainer.exportParams(which));
    const tokens = m.encode(held);
    const rec = m.decode(tokens);
    m.dispose();
    return { rec, mse: mse(held, rec), codesUsed: new Set(tokens).size };
  };
  return { n, held, baseline, params: judge('params'), ema: judge('ema') };
}

export async function main(argv: string[]): Promise<void> {
  const o = options(argv);
  const backend = await initTfBackend();
  const spec = loadSpec(o.preset);
  if (spec.dataset.kind !== 'shapes') throw readers(cli).error('--preset needs a shapes dataset');
  const R = spec.dvae.resolution;
  const steps = o.steps ?? spec.dvae.steps;
  const batch = o.batch ?? spec.train.batchSize / spec.train.worldSize;
  const { trainer, meanImage, last, trainSeconds } = await train(spec, steps, batch, o.json);
  const { n, held, baseline, params, ema } = judgeHeldOut(spec, trainer, meanImage);
  trainer.dispose();
  const g = grid([held, ema.rec, params.rec], n, R, 18);
  await writeFile(o.out, await encodePng(g.rgb, g.width, g.height));

  const summary = {
    preset: o.preset,
    backend,
    steps,
    batch,
    trainSeconds,
    lastStep: last,
    heldOut: n,
    baselineMse: baseline,
    params: { mse: params.mse, codesUsed: params.codesUsed },
    ema: { mse: ema.mse, codesUsed: ema.codesUsed },
    grid: o.out,
  };
  if (o.json) console.log(JSON.stringify(summary));
  else printSummary(summary);
}

function printSummary(s: {
  preset: string;
  backend: string;
  steps: number;
  batch: number;
  trainSeconds: number;
  heldOut: number;
  baselineMse: number;
  params: { mse: number; codesUsed: number };
  ema: { mse: number; codesUsed: number };
  grid: string;
}): void {
  console.log(
    `dvae-recon: preset ${s.preset} on ${s.backend}, ${s.steps} steps × ${s.batch} images in ${s.trainSeconds.toFixed(0)} s`,
  );
  console.log(`  held-out MSE (${s.heldOut} compositions never trained on), pixels in [0, 1]:`);
  console.log(`    code-free baseline (mean training image)  ${s.baselineMse.toFixed(4)}`);
  console.log(
    `    parameters                                 ${s.params.mse.toFixed(4)}  (${s.params.codesUsed} codes used)`,
  );
  console.log(
    `    EMA (what the sampler uses)                ${s.ema.mse.toFixed(4)}  (${s.ema.codesUsed} codes used)`,
  );
  console.log(`  grid: ${s.grid} (rows: originals, EMA reconstructions, parameter reconstructions)`);
}
