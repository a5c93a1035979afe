// One timed training step of `bench compare`, run in a child process of its own so that each measurement
// gets a fresh backend with its thread count fixed at load:
//   node --import tsx bench/lib/compare-step.ts '<job JSON>'
//
// The model code is imported from `job.root`: this checkout, or the baseline checkout of
// `bench compare --baseline DIR` (e.g. `git archive main` unpacked beside its node_modules), so that the
// same child times the step before and after a change. Only the model is taken from the root: the
// model sizes, the batches and the FLOP counts come from the parent, so both sides train the same model
// on the same data even when the baseline's presets differ.
//
// With `ranks`, the child is one of W single-thread ranks on this host (W children of one job): each
// computes the gradient of its batch/W share and the step goes on as a worker's does (FlatRuntime.step:
// PowerSGD's all-reduce over NATS, then the trainer's AdamW and EMA). The collective is this checkout's.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { connect } from 'nats';
import { renderShape, shapeItem } from '../../data/shapes.ts';
import { joinGroup, PowerSgd } from '../../collective/index.ts';
import type { RunSpec } from '../../config/index.ts';
import type { ParamSpec } from '../../model/index.ts';

/** What the parent asks one child to time. */
export interface StepJob {
  model: 'dvae' | 'transformer';
  /** The checkout whose model/index.ts is timed. */
  root: string;
  /** The run spec's `dvae` and `transformer` sections (the parent's, whatever the root). */
  dvae: { resolution: number; grid: number; codebookSize: number } & Record<string, unknown>;
  transformer: { textLen: number; vocabSize: number } & Record<string, unknown>;
  trainFlopsPerItem: number;
  batch: number;
  warmup: number;
  steps: number;
  /** Also profile the timed steps kernel by kernel (native backend only): `SideResult.kernels`. */
  kernels?: boolean;
  /** This child is rank `rank` of `worldSize` single-thread ranks; `batch` is the global batch. */
  ranks?: {
    url: string;
    runId: string;
    rank: number;
    worldSize: number;
    /** The stage's PowerSGD settings (stagePowerSgd of the compared config). */
    powersgd: RunSpec['powersgd'];
  };
}

/** One TensorFlow kernel's share of the timed steps (`bench compare --kernels`). */
export interface KernelFigure {
  name: string;
  callsPerStep: number;
  msPerStep: number;
}

/** What each side's child prints (the anchor's script prints the same fields). */
export interface SideResult {
  impl: string;
  stepSec: number[];
  cpuSec: number[];
  stepSecMedian: number;
  trainFlopsPerItem: number;
  parameters: number;
  detail: Record<string, unknown>;
  /** With `kernels`: every TensorFlow kernel the timed steps ran, most time first (wall ms; eager
   *  kernels run synchronously on the CPU backend), and the steps' time outside them. */
  kernels?: { perKernel: KernelFigure[]; kernelMsPerStep: number; outsideMsPerStep: number };
}

/** The parts of a checkout's model surface the step uses; its types are the root's own, unknown here. */
interface ModelSurface {
  initTfBackend(): Promise<string>;
  requestedThreads?: () => number | undefined;
  createDvaeTrainer(
    cfg: unknown,
    seed: number,
    worldSize: number,
    opts?: { probe?: Uint8Array },
  ): StepTrainer;
  createTransformerTrainer(cfg: unknown, dvae: unknown, seed: number, worldSize: number): StepTrainer;
}
interface StepTrainer {
  paramSpecs(): { shape: number[] }[];
  computeGradients(batch: unknown, step: number, rank: number): { grads: unknown; loss: number };
  applyGradients(grads: unknown, step: number, loss: number): unknown;
  dispose(): void;
}
/** The parts of a trainer a rank's step uses (activities/rank-runtime.ts's FlatRuntime). */
interface RankTrainer extends StepTrainer {
  paramSpecs(): ParamSpec[];
  computeGradients(batch: unknown, step: number, rank: number): { grads: Float32Array[]; loss: number };
  applyGradients(grads: Float32Array[], step: number, loss: number): unknown;
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

function dvaeBatch(job: StepJob, offset: number, n: number) {
  const R = job.dvae.resolution;
  const images = new Uint8Array(n * R * R * 3);
  for (let i = 0; i < n; i++) images.set(renderShape(shapeItem(offset + i, 'train', 1234), R), i * R * R * 3);
  return { images, n, first: offset % job.batch };
}

/** Captions of varying length (0-padded at the end) and arbitrary image tokens, as the anchor uses. */
function transformerBatch(job: StepJob, n: number) {
  const L = job.transformer.textLen;
  const N = job.dvae.grid ** 2;
  return {
    n,
    text: Int32Array.from({ length: n * L }, (_, k) =>
      k % L < 4 + (((k / L) | 0) % Math.max(1, L - 3)) ? 1 + ((7 * k) % (job.transformer.vocabSize - 1)) : 0,
    ),
    image: Int32Array.from({ length: n * N }, (_, k) => (13 * k + ((k / N) | 0)) % job.dvae.codebookSize),
  };
}

/** Times `job.steps` steps of the root's real Trainer (forward, backward, AdamW, EMA) after a warm-up; with
 *  `job.ranks`, this rank's share of them (its step includes PowerSGD's all-reduce, as a worker's does). */
export async function timeStep(job: StepJob): Promise<SideResult> {
  const root = resolve(job.root);
  const model = (await import(pathToFileURL(resolve(root, 'model/index.ts')).href)) as ModelSurface;
  const backend = await model.initTfBackend();
  const dvae = job.model === 'dvae';
  const W = job.ranks?.worldSize ?? 1;
  const rank = job.ranks?.rank ?? 0;
  if (job.batch % W !== 0) throw new RangeError(`batch ${job.batch} does not split over ${W} ranks`);
  const n = job.batch / W;
  const batches = dvae
    ? [0, 1, 2, 3].map((k) => dvaeBatch(job, k * job.batch + rank * n, n))
    : [transformerBatch(job, n)];
  // The timed batches double as the probe of codebook splitting (dvae.codeSplitEvery), as a run's
  // training images do: the median step is the plain one either way.
  const trainer = dvae
    ? model.createDvaeTrainer(job.dvae, 0, W, { probe: (batches[0] as { images: Uint8Array }).images })
    : model.createTransformerTrainer(job.transformer, job.dvae, 0, W);
  const parameters = trainer.paramSpecs().reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
  const net = job.ranks ? await joinRanks(job.ranks, trainer as RankTrainer) : undefined;
  const exposedMs: number[] = [];
  const step = async (s: number) => {
    const g = trainer.computeGradients(batches[s % batches.length], s, rank);
    if (!net) return void trainer.applyGradients(g.grads, s, g.loss);
    const r = await net.psgd.reduce(net.group, g.grads as Float32Array[], s, Float32Array.of(g.loss));
    exposedMs.push(r.stats.exposedCommMs);
    if (!r.skipped) trainer.applyGradients(r.grads, s, r.extras[0]! / W);
  };
  for (let s = 0; s < job.warmup; s++) await step(s);
  const profile = job.kernels ? await kernelProfile() : undefined;
  const stepSec: number[] = [];
  const cpuSec: number[] = [];
  exposedMs.length = 0;
  for (let s = job.warmup; s < job.warmup + job.steps; s++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await step(s);
    stepSec.push((performance.now() - t0) / 1000);
    const c = process.cpuUsage(c0);
    cpuSec.push((c.user + c.system) / 1e6);
  }
  const kernels = profile?.stop(job.steps, stepSec.reduce((a, b) => a + b, 0) * 1000);
  await net?.close();
  trainer.dispose();
  return {
    impl: 'dalle-cluster',
    stepSec,
    cpuSec,
    stepSecMedian: median(stepSec),
    trainFlopsPerItem: job.trainFlopsPerItem,
    parameters,
    kernels,
    // A baseline may predate DALLE_THREADS: the parent also sets TensorFlow's own thread variables.
    detail: {
      backend,
      root,
      threads: model.requestedThreads?.() ?? Number(process.env.TF_NUM_INTRAOP_THREADS),
      ...(job.ranks ? { rank, worldSize: W, exposedCommMs: median(exposedMs) } : {}),
    },
  };
}

/** This rank's group and PowerSGD, as a worker's FlatRuntime holds them. */
async function joinRanks(r: NonNullable<StepJob['ranks']>, trainer: RankTrainer) {
  const nc = await connect({ servers: r.url });
  const group = await joinGroup({
    nc,
    runId: r.runId,
    groupId: 'compare',
    rank: r.rank,
    worldSize: r.worldSize,
    timeoutMs: 60_000,
  });
  const psgd = new PowerSgd(trainer.paramSpecs(), r.powersgd, {
    rank: r.rank,
    worldSize: r.worldSize,
    seed: 0,
  });
  return {
    group,
    psgd,
    close: async () => {
      await group.close();
      await nc.close();
    },
  };
}

/** Times every call into TensorFlow's eager executor (tfjs-node's `binding.executeOp`, which every kernel
 *  goes through), every download (`tensorDataSync`) and upload (`createTensor`) until `stop`. */
async function kernelProfile() {
  const tf = await import('@tensorflow/tfjs');
  type Binding = Record<string, (...args: unknown[]) => unknown>;
  const backend = tf.backend() as unknown as { binding?: Binding };
  const binding = backend.binding;
  if (!binding?.executeOp) throw new Error('bench compare --kernels: needs the native backend (tfjs-node)');
  const totals = new Map<string, { calls: number; ms: number }>();
  const timed =
    (key: string, name: (args: unknown[]) => string) =>
    (...args: unknown[]) => {
      const t0 = performance.now();
      try {
        return binding[key]!(...args);
      } finally {
        const k = name(args);
        const t = totals.get(k) ?? { calls: 0, ms: 0 };
        t.calls++;
        t.ms += performance.now() - t0;
        totals.set(k, t);
      }
    };
  // The addon's exports cannot be reassigned: the backend gets a stand-in that times three of them.
  backend.binding = Object.create(binding, {
    executeOp: { value: timed('executeOp', (a) => String(a[0])) },
    tensorDataSync: { value: timed('tensorDataSync', () => '(download)') },
    createTensor: { value: timed('createTensor', () => '(upload)') },
  }) as Binding;
  return {
    stop(steps: number, stepMs: number) {
      backend.binding = binding;
      const perKernel = [...totals]
        .map(([name, t]) => ({ name, callsPerStep: t.calls / steps, msPerStep: t.ms / steps }))
        .sort((a, b) => b.msPerStep - a.msPerStep);
      const kernelMsPerStep = perKernel.reduce((a, k) => a + k.msPerStep, 0);
      return { perKernel, kernelMsPerStep, outsideMsPerStep: stepMs / steps - kernelMsPerStep };
    },
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  console.log(JSON.stringify(await timeStep(JSON.parse(process.argv[2]!) as StepJob)));
}
