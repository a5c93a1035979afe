// `dalle bench compare [--configs tiny,shapes,large] [--models dvae,transformer] [--threads 1,2]
//                      [--batch 32] [--steps 10] [--warmup 3] [--rounds 1] [--install-anchor] [--no-anchor]
//                      [--baseline DIR] [--kernels] [--no-ranks] [--json]`
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
// dVAE rows also time PyTorch running OUR network (`our net on torch`: bench/anchor/anchor_step.py
// rebuilds it from dvaeLayout, parameter count checked, with our loss terms): the ratio against it is
// the implementations' alone, the ratio against dalle-pytorch also the architectures'.
// Configs: `tiny` and `shapes` are the presets; `large` is `shapes` with a 32-wide dVAE and a
// d256 × 8-layer transformer.
//
// dalle-pytorch is not a project dependency: `--install-anchor` creates its virtual environment with
// bench/anchor/install-anchor.sh (outside the repository; DALLE_ANCHOR_VENV moves it).
//
// `--baseline DIR` also times the same step with another checkout's model code (before/after a change,
// in the same run): e.g. `mkdir /tmp/base && git archive main | tar -x -C /tmp/base && ln -s
// "$PWD/node_modules" /tmp/base/`.
//
// `--kernels` also profiles our timed steps kernel by kernel (every TensorFlow kernel, download and upload,
// with its calls and wall ms per step, and the time outside them: the tfjs engine and JS): the profile that
// says where a step's time goes before changing it.
//
// With T > 1 threads, ours is also timed as T single-thread ranks (`T ranks` in the layout column): T
// processes on this host, batch/T each, whose step is a worker's (gradient, PowerSGD's all-reduce over a
// nats-server the bench starts, AdamW, EMA), which is how `dalle worker` and the demo use T cores (cores/W
// threads per rank). The anchor's row is the same T-thread run. CPU s is then every rank's (not the
// server's). `--no-ranks` skips them.
//
// `--rounds R` runs every side of a row R times, alternating (odd rounds in reverse order): a side's
// figures pool the timed steps of its rounds, and a ratio is the median of the rounds' ratios with the
// lowest and highest beside it. On a shared machine one round's ratio moves by ±30 % between runs; the
// range says how far to trust it.
//
// Figures only, never pass/fail: quote ratios from one run, with the load it reports.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus, homedir, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { loadSpec, resolveSpec, type RunSpec } from '../config/index.ts';
import {
  dvaeForwardMacs,
  dvaeLayout,
  dvaeParameterCount,
  transformerFlopsPerSequence,
} from '../model/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { median, type SideResult, type StepJob } from './lib/compare-step.ts';
import { PACKAGE_ROOT, packageFile } from '../config/package-root.ts';
import { stagePowerSgd } from '../contract/index.ts';
import { startServer } from './lib/nats-server.ts';

// Run from the sources through tsx, as a baseline checkout's step is.
const stepChild = packageFile('bench/lib/compare-step.ts');
const repoRoot = PACKAGE_ROOT;
const anchorDir = packageFile('bench/anchor/');

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

/** The `--baseline` checkout cannot be timed. */
export class BaselineError extends Error {
  override name = 'BaselineError';
  constructor(
    readonly dir: string,
    readonly problem: string,
  ) {
    super(`bench compare --baseline ${dir}: ${problem}`);
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
  rounds: number;
  installAnchor: boolean;
  anchor: boolean;
  baseline?: string;
  kernels: boolean;
  ranks: boolean;
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
    rounds: {
      type: 'string',
      value: 'R',
      help: 'run every side R times, alternating; ratios are the median of the rounds, with their range (default 1)',
    },
    'install-anchor': {
      type: 'boolean',
      help: "create dalle-pytorch's virtual environment first if missing (~5.5 GB, outside the repository)",
    },
    'no-anchor': { type: 'boolean', help: 'measure our side only' },
    baseline: {
      type: 'string',
      value: 'DIR',
      help: 'also time the step of another checkout (e.g. main, unpacked beside a node_modules): before/after',
    },
    kernels: {
      type: 'boolean',
      help: 'profile our timed steps kernel by kernel (native backend): calls and ms per step of each',
    },
    'no-ranks': {
      type: 'boolean',
      help: 'with T > 1 threads, do not also time ours as T single-thread ranks (processes) on this host',
    },
    json: { type: 'boolean', help: 'print the figures as JSON' },
  },
  notes: [
    'The anchor lives in $DALLE_ANCHOR_VENV (default ~/.cache/dalle/anchor/dalle-pytorch-1.6.6).',
    'Quote ratios from one run, with the load it prints: a shared machine stretches wall time.',
    'On a noisy machine use --rounds 3 or more and quote the range with the ratio.',
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
    rounds: read.int('rounds', values.rounds, 1) ?? 1,
    installAnchor: !!values['install-anchor'],
    anchor: !values['no-anchor'],
    baseline: values.baseline === undefined ? undefined : resolve(values.baseline),
    kernels: !!values.kernels,
    ranks: !values['no-ranks'],
    json: !!values.json,
  };
}

// ---- one side of one comparison, in a child process ------------------------------------------------

export interface Job {
  model: ModelName;
  config: ConfigName;
  batch: number;
  threads: number;
  warmup: number;
  steps: number;
  kernels: boolean;
}

function stepJob(job: Job, root: string, ranks?: StepJob['ranks']): StepJob {
  const spec = compareSpec(job.config);
  return {
    model: job.model,
    root,
    dvae: spec.dvae,
    transformer: spec.transformer,
    trainFlopsPerItem:
      job.model === 'dvae'
        ? 3 * 2 * dvaeForwardMacs(spec.dvae)
        : transformerFlopsPerSequence(spec.transformer, spec.dvae).train,
    batch: job.batch,
    warmup: job.warmup,
    steps: job.steps,
    kernels: job.kernels && !ranks,
    ranks,
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
    // What DALLE_THREADS sets in model/tf-backend.ts, for a baseline that predates it.
    TF_NUM_INTRAOP_THREADS: t,
    TF_NUM_INTEROP_THREADS: '1',
    OMP_NUM_THREADS: t,
    MKL_NUM_THREADS: t,
    TF_CPP_MIN_LOG_LEVEL: process.env.TF_CPP_MIN_LOG_LEVEL ?? '2',
    DALLE_LOG_LEVEL: 'silent',
  };
}

/** Our step in a child process: with the model of `root`, and with `ranks` as one single-thread rank. */
function runOurs(job: Job, root: string, ranks?: StepJob['ranks']): Promise<SideResult> {
  const who = root === repoRoot ? 'our' : `the baseline's (${root})`;
  return runChild(
    process.execPath,
    ['--import', 'tsx', stepChild, JSON.stringify(stepJob(job, root, ranks))],
    threadEnv(ranks ? 1 : job.threads),
    ranks
      ? `${who} ${job.model} rank ${ranks.rank} of ${ranks.worldSize} (${job.config})`
      : `${who} ${job.model} step (${job.config}, ${job.threads} threads)`,
  );
}

/** Ours as `job.threads` single-thread ranks of one group: rank 0's step times (the all-reduce keeps the
 *  ranks in step), every rank's CPU. */
async function runRanks(job: Job, root: string, url: string): Promise<SideResult> {
  const W = job.threads;
  const runId = `compare-${process.pid}-${Date.now()}`;
  const powersgd = stagePowerSgd(compareSpec(job.config), job.model);
  const results = await Promise.all(
    Array.from({ length: W }, (_, rank) => runOurs(job, root, { url, runId, rank, worldSize: W, powersgd })),
  );
  const first = results[0]!;
  return {
    ...first,
    cpuSec: first.cpuSec.map((_, i) => results.reduce((sum, r) => sum + (r.cpuSec[i] ?? 0), 0)),
    detail: { ...first.detail, layout: 'ranks' },
  };
}

function anchorJob(job: Job, network?: 'ours'): Record<string, unknown> {
  const spec = compareSpec(job.config);
  const base = {
    model: job.model,
    batch: job.batch,
    threads: job.threads,
    warmup: job.warmup,
    steps: job.steps,
  };
  if (job.model === 'dvae' && network === 'ours') {
    const d = spec.dvae;
    const layout = dvaeLayout(d);
    return {
      ...base,
      network,
      dvae: {
        resolution: d.resolution,
        parameters: dvaeParameterCount(d),
        // ±∞ (no clamp) travels as null.
        layout: { ...layout, eps: d.logitLaplaceEps },
      },
    };
  }
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

/** dalle-pytorch's environment is complete in `venv` (install-anchor.sh writes the marker last). */
export function anchorInstalled(venv: string): boolean {
  return existsSync(join(venv, '.dalle-anchor.json'));
}

export function anchorVenv(): string {
  return (
    process.env.DALLE_ANCHOR_VENV ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dalle', 'anchor', 'dalle-pytorch-1.6.6')
  );
}

/** What anchor_step.py's rebuild of our dVAE leaves out: a layout using any of it has no `our net on
 *  torch` figure (the presets use none). */
function unsupportedByTorchRebuild(job: Job): string | undefined {
  const l = dvaeLayout(compareSpec(job.config).dvae);
  if (l.quantizer !== 'gumbel') return `quantizer ${l.quantizer}`;
  if (l.straightThrough) return 'straightThrough';
  if (l.diversityWeight > 0) return 'diversityWeight';
  if (l.codeLogitScale !== 0) return 'codeLogitScale';
  if (l.cellColor) return 'cellColorWeight';
  return undefined;
}

export async function runAnchor(job: Job, venv: string, network?: 'ours'): Promise<SideResult> {
  const r = await runChild(
    join(venv, 'bin', 'python'),
    [join(anchorDir, 'anchor_step.py'), JSON.stringify(anchorJob(job, network))],
    threadEnv(job.threads),
    `${network ? 'PyTorch with our network' : 'dalle-pytorch'}: ${job.model} step (${job.config}, ${job.threads} threads)`,
  );
  const { impl, stepSec, cpuSec, stepSecMedian, trainFlopsPerItem, parameters, ...detail } = r as SideResult &
    Record<string, unknown>;
  return { impl, stepSec, cpuSec, stepSecMedian, trainFlopsPerItem, parameters, detail };
}

async function ensureAnchor(o: Options): Promise<string> {
  const venv = anchorVenv();
  const installed = anchorInstalled(venv);
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
  /** One process with `threads` intra-op threads, or `threads` single-thread ranks. */
  layout: 'threads' | 'ranks';
  batch: number;
  /** Each side ran this many times, alternating with the others (`--rounds`). */
  rounds: number;
  /** Every side's figures pool the timed steps of all its rounds (their median). */
  ours: SideResult & { stepsPerSec: number; imagesPerSec: number; gflops: number };
  anchor?: SideResult & { stepsPerSec: number; imagesPerSec: number; gflops: number };
  /** Our steps/s over dalle-pytorch's: the median over rounds of each round's ratio. */
  ratio?: number;
  /** The lowest and highest round's ratio (more than one round). */
  ratioRange?: [number, number];
  /** dVAE: PyTorch running our network (same layers and loss terms), same batch and threads. */
  ourNetOnTorch?: SideResult & { stepsPerSec: number; imagesPerSec: number; gflops: number };
  /** Our steps/s over ourNetOnTorch's: the implementations alone. */
  ratioOurNet?: number;
  ratioOurNetRange?: [number, number];
  /** The same step with `--baseline`'s model code. */
  baseline?: SideResult & { stepsPerSec: number; imagesPerSec: number; gflops: number };
  /** Our steps/s over the baseline's. */
  speedup?: number;
  speedupRange?: [number, number];
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

/** The processes a row times: ours, the anchor, PyTorch with our network, the baseline, and ours and the
 *  baseline as single-thread ranks. */
type Side = 'baseline' | 'ours' | 'anchor' | 'ourNet' | 'baseRanks' | 'ranks';
type Round = Partial<Record<Side, SideResult>>;

/** Every side of a row once. Odd rounds run them in reverse, so that load drifting through the run weighs
 *  on both ends of a ratio alike. */
async function runRound(runs: [Side, () => Promise<SideResult>][], backwards: boolean): Promise<Round> {
  const round: Round = {};
  for (const [side, run] of backwards ? [...runs].reverse() : runs) round[side] = await run();
  return round;
}

/** One side's rounds as one result: the timed steps of every round, and their median (`--kernels`: the
 *  first round's profile). */
export function pooled(results: SideResult[]): SideResult {
  const stepSec = results.flatMap((r) => r.stepSec);
  return {
    ...results[0]!,
    stepSec,
    cpuSec: results.flatMap((r) => r.cpuSec),
    stepSecMedian: median(stepSec),
  };
}

/** `a`'s steps/s over `b`'s in every round that timed both: their median and range; undefined when none
 *  did. Each ratio is of two processes that ran minutes apart at most, not of pooled figures that a
 *  change of load between rounds would skew. */
export function overRounds(
  rounds: Round[],
  a: Side,
  b: Side,
): { median: number; range: [number, number] } | undefined {
  const xs = rounds.flatMap((r) => (r[a] && r[b] ? [r[b].stepSecMedian / r[a].stepSecMedian] : []));
  if (xs.length === 0) return undefined;
  return { median: median(xs), range: [Math.min(...xs), Math.max(...xs)] };
}

/** One config, model and thread count: every side `o.rounds` times; a row of one process with
 *  `job.threads` threads, and one of single-thread ranks when a server is given and threads > 1. */
async function timeRow(job: Job, o: Options, venv?: string, serverUrl?: string): Promise<Comparison[]> {
  const { model, config, threads } = job;
  const skip = model === 'dvae' && venv ? unsupportedByTorchRebuild(job) : undefined;
  if (skip) process.stderr.write(`bench compare: no PyTorch rebuild of a dVAE with ${skip}\n`);
  const runs: [Side, () => Promise<SideResult>][] = [];
  if (o.baseline) runs.push(['baseline', () => runOurs(job, o.baseline!)]);
  runs.push(['ours', () => runOurs(job, repoRoot)]);
  if (venv) runs.push(['anchor', () => runAnchor(job, venv)]);
  if (venv && model === 'dvae' && !skip) runs.push(['ourNet', () => runAnchor(job, venv, 'ours')]);
  if (serverUrl && threads > 1) {
    if (o.baseline) runs.push(['baseRanks', () => runRanks(job, o.baseline!, serverUrl)]);
    runs.push(['ranks', () => runRanks(job, repoRoot, serverUrl)]);
  }
  const rounds: Round[] = [];
  for (let r = 0; r < o.rounds; r++) {
    const which = o.rounds > 1 ? ` (round ${r + 1} of ${o.rounds})` : '';
    process.stderr.write(`bench compare: ${model} ${config}, ${threads} thread(s)${which}…\n`);
    rounds.push(await runRound(runs, r % 2 === 1));
  }
  const side = (s: Side) => (rounds[0]![s] ? figures(pooled(rounds.map((x) => x[s]!)), o.batch) : undefined);
  const row = (layout: Comparison['layout'], mine: Side, base: Side): Comparison => {
    const ratio = overRounds(rounds, mine, 'anchor');
    const ratioOurNet = overRounds(rounds, mine, 'ourNet');
    const speedup = overRounds(rounds, mine, base);
    return {
      model,
      config,
      threads,
      layout,
      batch: o.batch,
      rounds: o.rounds,
      ours: side(mine)!,
      anchor: side('anchor'),
      ratio: ratio?.median,
      ratioRange: ratio?.range,
      ourNetOnTorch: side('ourNet'),
      ratioOurNet: ratioOurNet?.median,
      ratioOurNetRange: ratioOurNet?.range,
      baseline: side(base),
      speedup: speedup?.median,
      speedupRange: speedup?.range,
      loadavg1: loadavg()[0]!,
    };
  };
  const rows = [row('threads', 'ours', 'baseline')];
  if (rounds[0]!.ranks) rows.push(row('ranks', 'ranks', 'baseRanks'));
  return rows;
}

export async function main(argv: string[]): Promise<void> {
  const o = options(argv);
  const venv = o.anchor ? await ensureAnchor(o) : undefined;
  if (o.baseline && !existsSync(join(o.baseline, 'model', 'index.ts'))) {
    throw new BaselineError(o.baseline, 'has no model/index.ts (expected a checkout of this repository)');
  }
  const startLoad = loadavg()[0]!;
  const rows: Comparison[] = [];
  const server = o.ranks && o.threads.some((t) => t > 1) ? await startServer() : undefined;
  try {
    for (const config of o.configs) {
      for (const model of o.models) {
        for (const threads of o.threads) {
          const job: Job = {
            model,
            config,
            threads,
            batch: o.batch,
            warmup: o.warmup,
            steps: o.steps,
            kernels: o.kernels,
          };
          rows.push(...(await timeRow(job, o, venv, server?.url)));
        }
      }
    }
  } finally {
    server?.stop();
  }
  const report = {
    bench: 'compare',
    machine: { cpus: cpus().length, loadavgStart: startLoad, loadavgEnd: loadavg()[0]! },
    batch: o.batch,
    steps: o.steps,
    warmup: o.warmup,
    rounds: o.rounds,
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
  rounds: number;
  rows: Comparison[];
}): void {
  const f = (x: number | undefined, d = 2) => (x === undefined ? '–' : x.toFixed(d));
  const several = r.rounds > 1;
  // With several rounds: the median round's ratio and, in brackets, the lowest and highest.
  const times = (x: number | undefined, range?: [number, number]) =>
    x === undefined
      ? '–'
      : `${x.toFixed(2)}×` + (several && range ? ` (${range[0].toFixed(2)}–${range[1].toFixed(2)})` : '');
  const wide = several ? 18 : 7;
  const first = r.rows[0];
  console.log(
    `bench compare: batch ${r.batch}, median of ${r.steps} steps after ${r.warmup} warm-up` +
      (several ? ` in each of ${r.rounds} alternating rounds` : '') +
      `; ours on ${String(first?.ours.detail.backend ?? '?')}` +
      (first?.anchor
        ? `, dalle-pytorch ${String((first.anchor.detail.versions as Record<string, string>)?.dalle_pytorch)} on torch ${String((first.anchor.detail.versions as Record<string, string>)?.torch)}`
        : '') +
      (first?.baseline ? `; baseline ${String(first.baseline.detail.root)}` : '') +
      `; load ${r.machine.loadavgStart.toFixed(1)} → ${r.machine.loadavgEnd.toFixed(1)} on ${r.machine.cpus} cores`,
  );
  const base = r.rows.some((x) => x.baseline);
  const cols: [string, number, (x: Comparison) => string][] = [
    ['model', 12, (x) => x.model],
    ['config', 7, (x) => x.config],
    ['thr', 4, (x) => String(x.threads)],
    ['layout', 8, (x) => (x.layout === 'ranks' ? `${x.threads} ranks` : '1 proc')],
    ...((base
      ? [
          ['base steps/s', 13, (x) => f(x.baseline?.stepsPerSec)],
          ['CPU s', 7, (x) => f(x.baseline && median(x.baseline.cpuSec), 3)],
        ]
      : []) as [string, number, (x: Comparison) => string][]),
    ['ours steps/s', 13, (x) => f(x.ours.stepsPerSec)],
    ['images/s', 9, (x) => f(x.ours.imagesPerSec, 0)],
    ['GFLOP/s', 8, (x) => f(x.ours.gflops, 1)],
    ['CPU s', 7, (x) => f(median(x.ours.cpuSec), 3)],
    ...((base ? [['×base', wide, (x) => times(x.speedup, x.speedupRange)]] : []) as [
      string,
      number,
      (x: Comparison) => string,
    ][]),
    ['anchor steps/s', 15, (x) => f(x.anchor?.stepsPerSec)],
    ['images/s', 9, (x) => f(x.anchor?.imagesPerSec, 0)],
    ['GFLOP/s', 8, (x) => f(x.anchor?.gflops, 1)],
    ['CPU s', 7, (x) => f(x.anchor && median(x.anchor.cpuSec), 3)],
    ['ratio', wide, (x) => times(x.ratio, x.ratioRange)],
    ...((r.rows.some((x) => x.ourNetOnTorch)
      ? [
          ['our net on torch', 16, (x) => f(x.ourNetOnTorch?.stepsPerSec)],
          ['CPU s', 7, (x) => f(x.ourNetOnTorch && median(x.ourNetOnTorch.cpuSec), 3)],
          ['ratio', wide, (x) => times(x.ratioOurNet, x.ratioOurNetRange)],
        ]
      : []) as [string, number, (x: Comparison) => string][]),
    ['load', 5, (x) => x.loadavg1.toFixed(1)],
  ];
  const line = (cells: string[]) =>
    cells.map((c, i) => (i < 2 || i === 3 ? c.padEnd(cols[i]![1]) : c.padStart(cols[i]![1]))).join(' ');
  console.log(line(cols.map((c) => c[0])));
  for (const x of r.rows) console.log(line(cols.map((c) => c[2](x))));
  for (const x of r.rows) if (x.ours.kernels) printKernels(x, x.ours.kernels);
}

/** `--kernels`: where one row's step time went, the 20 costliest kernels first. */
function printKernels(x: Comparison, k: NonNullable<SideResult['kernels']>): void {
  const step = x.ours.stepSecMedian * 1000;
  const calls = k.perKernel.reduce((a, q) => a + q.callsPerStep, 0);
  console.log(
    `\nkernels of our ${x.model} step (${x.config}, ${x.threads} thread(s)): ${calls.toFixed(0)} calls, ` +
      `${k.kernelMsPerStep.toFixed(1)} ms per step in them, ${k.outsideMsPerStep.toFixed(1)} ms outside ` +
      `(tfjs engine, JS); median step ${step.toFixed(1)} ms`,
  );
  console.log(
    `${'kernel'.padEnd(34)} ${'calls'.padStart(7)} ${'ms/step'.padStart(8)} ${'share'.padStart(6)}`,
  );
  const total = k.kernelMsPerStep + k.outsideMsPerStep;
  for (const q of k.perKernel.slice(0, 20)) {
    console.log(
      `${q.name.padEnd(34)} ${q.callsPerStep.toFixed(1).padStart(7)} ${q.msPerStep.toFixed(2).padStart(8)} ` +
        `${((100 * q.msPerStep) / total).toFixed(1).padStart(5)}%`,
    );
  }
}
