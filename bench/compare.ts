// `dalle bench compare [--configs tiny,shapes,large] [--models dvae,transformer] [--threads 1,2]
//                      [--batch 32] [--steps 10] [--warmup 3] [--install-anchor] [--no-anchor] [--json]`
//
// Our training step against the reference implementation, dalle-pytorch on PyTorch's CPU kernels, in one
// run: for each config, model and thread count, our step (the real Trainer: computeGradients +
// applyGradients, i.e. forward, backward, AdamW, EMA) and dalle-pytorch's (forward, loss, backward, AdamW,
// EMA; clipping for the transformer) on the same batch size and the same number of threads, each in a
// fresh process, median of `steps` timed steps after `warmup`. Prints steps/s, images/s, GFLOP/s (each
// side's own FLOPs: 3 × forward multiply-adds × 2), the median CPU seconds per step (what the load moves
// least: a shared machine stretches wall time, not work) and the ratio of steps/s (ours / theirs).
//
// Models compared: the transformer with our sizes (d_model, layers, heads, text and image lengths,
// vocabularies; full attention on their side). The dVAEs share no architecture, so theirs
// (DiscreteVAE, one resblock) gets the width whose forward multiply-adds per image are closest to ours.
// Configs: `tiny` and `shapes` are the presets; `large` is `shapes` with a 32-wide dVAE and a
// d256 × 8-layer transformer.
//
// dalle-pytorch is not a project dependency: `--install-anchor` creates its virtual environment with
// bench/anchor/install-anchor.sh (outside the repository; DALLE_ANCHOR_VENV moves it). Figures only,
// never pass/fail: quote ratios from one run, with the load it reports.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, homedir, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { loadSpec, resolveSpec, type RunSpec } from '../config/index.ts';
import { renderShape, shapeItem } from '../data/shapes.ts';
import {
  createDvaeTrainer,
  createTransformerTrainer,
  dvaeForwardMacs,
  initTfBackend,
  requestedThreads,
  transformerFlopsPerSequence,
  type Trainer,
} from '../model/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';

const self = fileURLToPath(import.meta.url);
const anchorDir = fileURLToPath(new URL('./anchor/', import.meta.url));

/** The reference implementation could not be installed or run. */
export class AnchorError extends Error {
  override name = 'AnchorError';
  constructor(
    readonly venv: string,
    readonly problem: string,
  ) {
    super(`bench compare: dalle-pytorch (${venv}): ${problem}`);
  }
}

export const configNames = ['tiny', 'shapes', 'large'] as const;
export type ConfigName = (typeof configNames)[number];
export const modelNames = ['dvae', 'transformer'] as const;
export type ModelName = (typeof modelNames)[number];

/** The run spec of a compared config (only its model sizes matter here). */
export function compareSpec(name: ConfigName): RunSpec {
  if (name !== 'large') return loadSpec(name);
  return resolveSpec(
    { preset: 'shapes', dvae: { hidden: 32 }, transformer: { layers: 8, dModel: 256, heads: 8 } },
    'bench compare config large',
  );
}

interface Options {
  configs: ConfigName[];
  models: ModelName[];
  threads: number[];
  batch: number;
  steps: number;
  warmup: number;
  installAnchor: boolean;
  anchor: boolean;
  json: boolean;
}

export const cli = command({
  name: 'bench compare',
  summary: "our training step against dalle-pytorch's, same batch and threads, in one run",
  options: {
    configs: {
      type: 'string',
      value: 'list',
      help: `comma list of ${configNames.join(', ')} (default all)`,
    },
    models: { type: 'string', value: 'list', help: `comma list of ${modelNames.join(', ')} (default both)` },
    threads: { type: 'string', value: 'list', help: 'comma list of thread counts (default 1,2)' },
    batch: { type: 'string', value: 'B', help: 'images (sequences) per step, both sides (default 32)' },
    steps: { type: 'string', value: 'N', help: 'timed steps; the median is reported (default 10)' },
    warmup: { type: 'string', value: 'N', help: 'untimed steps first (default 3)' },
    'install-anchor': {
      type: 'boolean',
      help: "create dalle-pytorch's virtual environment first if missing (~5.5 GB, outside the repository)",
    },
    'no-anchor': { type: 'boolean', help: 'measure our side only' },
    json: { type: 'boolean', help: 'print the figures as JSON' },
  },
  notes: [
    'The anchor lives in $DALLE_ANCHOR_VENV (default ~/.cache/dalle/anchor/dalle-pytorch-1.6.6).',
    'Quote ratios from one run, with the load it prints: a shared machine stretches wall time.',
  ],
});

function options(argv: string[]): Options {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  return {
    configs: read.choices('configs', values.configs, configNames) ?? [...configNames],
    models: read.choices('models', values.models, modelNames) ?? [...modelNames],
    threads: read.ints('threads', values.threads, 1) ?? [1, 2],
    batch: read.int('batch', values.batch, 1) ?? 32,
    steps: read.int('steps', values.steps, 1) ?? 10,
    warmup: read.int('warmup', values.warmup, 0) ?? 3,
    installAnchor: !!values['install-anchor'],
    anchor: !values['no-anchor'],
    json: !!values.json,
  };
}

// ---- one side of one comparison, in a child process ------------------------------------------------

interface Job {
  model: ModelName;
  config: ConfigName;
  batch: number;
  threads: number;
  warmup: number;
  steps: number;
}

/** What each side's child prints. */
export interface SideResult {
  impl: string;
  stepSec: number[];
  cpuSec: number[];
  stepSecMedian: number;
  trainFlopsPerItem: number;
  parameters: number;
  detail: Record<string, unknown>;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function dvaeBatch(spec: RunSpec, n: number, offset: number) {
  const R = spec.dvae.resolution;
  const images = new Uint8Array(n * R * R * 3);
  for (let i = 0; i < n; i++) images.set(renderShape(shapeItem(offset + i, 'train', 1234), R), i * R * R * 3);
  return { images, n };
}

/** Captions of varying length (0-padded at the end) and arbitrary image tokens, as the anchor uses. */
function transformerBatch(spec: RunSpec, n: number) {
  const L = spec.transformer.textLen;
  const N = spec.dvae.grid ** 2;
  return {
    n,
    text: Int32Array.from({ length: n * L }, (_, k) =>
      k % L < 4 + (((k / L) | 0) % Math.max(1, L - 3)) ? 1 + ((7 * k) % (spec.transformer.vocabSize - 1)) : 0,
    ),
    image: Int32Array.from({ length: n * N }, (_, k) => (13 * k + ((k / N) | 0)) % spec.dvae.codebookSize),
  };
}

async function oursChild(job: Job): Promise<SideResult> {
  const backend = await initTfBackend();
  const spec = compareSpec(job.config);
  let trainer: Trainer<unknown>;
  let batches: unknown[];
  let flops: number;
  if (job.model === 'dvae') {
    trainer = createDvaeTrainer(spec.dvae, 0, 1) as Trainer<unknown>;
    batches = [0, 1, 2, 3].map((k) => dvaeBatch(spec, job.batch, k * job.batch));
    flops = 3 * 2 * dvaeForwardMacs(spec.dvae);
  } else {
    trainer = createTransformerTrainer(spec.transformer, spec.dvae, 0, 1) as Trainer<unknown>;
    batches = [transformerBatch(spec, job.batch)];
    flops = transformerFlopsPerSequence(spec.transformer, spec.dvae).train;
  }
  const parameters = trainer.paramSpecs().reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
  const step = (s: number) => {
    const g = trainer.computeGradients(batches[s % batches.length], s, 0);
    trainer.applyGradients(g.grads, s, g.loss);
  };
  for (let s = 0; s < job.warmup; s++) step(s);
  const stepSec: number[] = [];
  const cpuSec: number[] = [];
  for (let s = job.warmup; s < job.warmup + job.steps; s++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    step(s);
    stepSec.push((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    cpuSec.push((c.user + c.system) / 1e6);
  }
  trainer.dispose();
  return {
    impl: 'dalle-cluster',
    stepSec,
    cpuSec,
    stepSecMedian: median(stepSec),
    trainFlopsPerItem: flops,
    parameters,
    detail: { backend, threads: requestedThreads() ?? null },
  };
}

function runChild(cmd: string, args: string[], env: NodeJS.ProcessEnv, what: string): Promise<SideResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => {
      const line = out.trim().split('\n').pop() ?? '';
      if (code === 0 && line.startsWith('{')) return resolve(JSON.parse(line) as SideResult);
      reject(new Error(`${what} exited ${code}: ${err.trim().split('\n').slice(-6).join('\n')}`));
    });
  });
}

function threadEnv(threads: number): NodeJS.ProcessEnv {
  // Every runtime's own knob, so neither side can use more cores than the other.
  const t = String(threads);
  return {
    ...process.env,
    DALLE_THREADS: t,
    OMP_NUM_THREADS: t,
    MKL_NUM_THREADS: t,
    TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? '2',
    DALLE_LOG_LEVEL: 'silent',
  };
}

function runOurs(job: Job): Promise<SideResult> {
  return runChild(
    process.execPath,
    ['--import', 'tsx', self, '--child', JSON.stringify(job)],
    threadEnv(job.threads),
    `our ${job.model} step (${job.config}, ${job.threads} threads)`,
  );
}

function anchorJob(job: Job): Record<string, unknown> {
  const spec = compareSpec(job.config);
  const base = {
    model: job.model,
    batch: job.batch,
    threads: job.threads,
    warmup: job.warmup,
    steps: job.steps,
  };
  if (job.model === 'dvae') {
    const d = spec.dvae;
    return {
      ...base,
      dvae: {
        resolution: d.resolution,
        grid: d.grid,
        codebookSize: d.codebookSize,
        targetMacs: dvaeForwardMacs(d),
      },
    };
  }
  const t = spec.transformer;
  return {
    ...base,
    transformer: {
      dModel: t.dModel,
      layers: t.layers,
      heads: t.heads,
      textLen: t.textLen,
      vocabSize: t.vocabSize,
      grid: spec.dvae.grid,
      codebookSize: spec.dvae.codebookSize,
      attention: 'full',
    },
  };
}

function anchorVenv(): string {
  return (
    process.env.DALLE_ANCHOR_VENV ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dalle', 'anchor', 'dalle-pytorch-1.6.6')
  );
}

async function runAnchor(job: Job, venv: string): Promise<SideResult> {
  const r = await runChild(
    join(venv, 'bin', 'python'),
    [join(anchorDir, 'anchor_step.py'), JSON.stringify(anchorJob(job))],
    threadEnv(job.threads),
    `dalle-pytorch ${job.model} step (${job.config}, ${job.threads} threads)`,
  );
  const { impl, stepSec, cpuSec, stepSecMedian, trainFlopsPerItem, parameters, ...detail } = r as SideResult &
    Record<string, unknown>;
  return { impl, stepSec, cpuSec, stepSecMedian, trainFlopsPerItem, parameters, detail };
}

async function ensureAnchor(o: Options): Promise<string> {
  const venv = anchorVenv();
  const installed = existsSync(join(venv, '.dalle-anchor.json'));
  if (installed && !o.installAnchor) return venv;
  if (!o.installAnchor) {
    throw new AnchorError(
      venv,
      'not installed; rerun with --install-anchor (creates its virtual environment, ~5.5 GB once) or --no-anchor',
    );
  }
  await new Promise<void>((resolve, reject) => {
    const p = spawn(join(anchorDir, 'install-anchor.sh'), ['--venv', venv], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    p.on('error', reject);
    p.on('exit', (code) =>
      code === 0
        ? resolve()
        : reject(new AnchorError(venv, `install-anchor.sh exited ${code} (output above)`)),
    );
  });
  return venv;
}

// ---- the comparison ---------------------------------------------------------------------------------

export interface Comparison {
  model: ModelName;
  config: ConfigName;
  threads: number;
  batch: number;
  ours: SideResult & { stepsPerSec: number; imagesPerSec: number; gflops: number };
  anchor?: SideResult & { stepsPerSec: number; imagesPerSec: number; gflops: number };
  /** Our steps/s over dalle-pytorch's. */
  ratio?: number;
  loadavg1: number;
}

function figures(r: SideResult, batch: number) {
  return {
    ...r,
    stepsPerSec: 1 / r.stepSecMedian,
    imagesPerSec: batch / r.stepSecMedian,
    gflops: (r.trainFlopsPerItem * batch) / r.stepSecMedian / 1e9,
  };
}

export async function main(argv: string[]): Promise<void> {
  const o = options(argv);
  const venv = o.anchor ? await ensureAnchor(o) : undefined;
  const startLoad = loadavg()[0]!;
  const rows: Comparison[] = [];
  for (const config of o.configs) {
    for (const model of o.models) {
      for (const threads of o.threads) {
        const job: Job = { model, config, threads, batch: o.batch, warmup: o.warmup, steps: o.steps };
        process.stderr.write(`bench compare: ${model} ${config}, ${threads} thread(s)…\n`);
        const ours = figures(await runOurs(job), o.batch);
        const anchor = venv ? figures(await runAnchor(job, venv), o.batch) : undefined;
        rows.push({
          model,
          config,
          threads,
          batch: o.batch,
          ours,
          anchor,
          ratio: anchor ? ours.stepsPerSec / anchor.stepsPerSec : undefined,
          loadavg1: loadavg()[0]!,
        });
      }
    }
  }
  const report = {
    bench: 'compare',
    machine: { cpus: cpus().length, loadavgStart: startLoad, loadavgEnd: loadavg()[0]! },
    batch: o.batch,
    steps: o.steps,
    warmup: o.warmup,
    rows,
  };
  if (o.json) {
    console.log(JSON.stringify(report));
    return;
  }
  printTable(report);
}

function printTable(r: {
  machine: { cpus: number; loadavgStart: number; loadavgEnd: number };
  batch: number;
  steps: number;
  warmup: number;
  rows: Comparison[];
}): void {
  const f = (x: number | undefined, d = 2) => (x === undefined ? '–' : x.toFixed(d));
  const first = r.rows[0];
  console.log(
    `bench compare: batch ${r.batch}, median of ${r.steps} steps after ${r.warmup} warm-up; ours on ${String(first?.ours.detail.backend ?? '?')}` +
      (first?.anchor
        ? `, dalle-pytorch ${String((first.anchor.detail.versions as Record<string, string>)?.dalle_pytorch)} on torch ${String((first.anchor.detail.versions as Record<string, string>)?.torch)}`
        : '') +
      `; load ${r.machine.loadavgStart.toFixed(1)} → ${r.machine.loadavgEnd.toFixed(1)} on ${r.machine.cpus} cores`,
  );
  const head = [
    'model',
    'config',
    'thr',
    'ours steps/s',
    'images/s',
    'GFLOP/s',
    'CPU s',
    'anchor steps/s',
    'images/s',
    'GFLOP/s',
    'CPU s',
    'ratio',
    'load',
  ];
  const widths = [12, 7, 4, 13, 9, 8, 7, 15, 9, 8, 7, 7, 5];
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' ');
  console.log(line(head));
  for (const x of r.rows) {
    console.log(
      line([
        x.model,
        x.config,
        String(x.threads),
        f(x.ours.stepsPerSec),
        f(x.ours.imagesPerSec, 0),
        f(x.ours.gflops, 1),
        f(median(x.ours.cpuSec), 3),
        f(x.anchor?.stepsPerSec),
        f(x.anchor?.imagesPerSec, 0),
        f(x.anchor?.gflops, 1),
        f(x.anchor && median(x.anchor.cpuSec), 3),
        x.ratio === undefined ? '–' : `${x.ratio.toFixed(2)}×`,
        x.loadavg1.toFixed(1),
      ]),
    );
  }
}

if (
  process.argv[1] &&
  import.meta.url === pathToFileURL(process.argv[1]).href &&
  process.argv[2] === '--child'
) {
  console.log(JSON.stringify(await oursChild(JSON.parse(process.argv[3]!) as Job)));
}
