// `dalle bench native [--json] [--backends tensorflow,wasm,cpu] [--steps N] [--python PATH]`
//
// One run, one process: native TensorFlow (tfjs-node, when infra/native/install-tfjs-node.sh has placed
// it) against tfjs-backend-wasm and the pure-JS cpu backend, on
//   - a 1024² float32 matmul,
//   - a 3×3 conv2d, 64→64 channels, batch 8 of 32×32,
//   - a transformer-like training step from plain tfjs ops (0.85M parameters, batch 32 × 80 tokens,
//     width 128, 4 layers, Adam): 11.6 s per step on wasm on an idle 2-core machine,
// plus numpy's float32 1024² matmul (a python subprocess) as the practical peak of this machine.
// The native backend's goals: native ≥ 30× wasm on the step, and ≥ 50 % of numpy's matmul GFLOP/s.
// Figures only: machines are shared and noisy, so quote the ratios of one run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { availableParallelism, homedir, loadavg } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { tfBackendNames, type TfBackendName } from '../model/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';

const nativePackages = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];
type Backend = TfBackendName;

/** The step's shape cannot be built (width not divisible by heads). */
export class StepShapeError extends Error {
  override name = 'StepShapeError';
  constructor(
    readonly width: number,
    readonly heads: number,
  ) {
    super(`bench native: width ${width} is not divisible by heads ${heads}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// The transformer-like step. Plain ops only, and only ops whose gradients tfjs-backend-wasm 4.22 has:
// token embedding is a one-hot matmul because gather's gradient (UnsortedSegmentSum) is missing there.

export interface StepShape {
  batch: number; // B
  tokens: number; // T
  width: number; // C
  layers: number;
  heads: number;
  vocab: number; // V
}
export const benchShape: StepShape = { batch: 32, tokens: 80, width: 128, layers: 4, heads: 4, vocab: 256 };

export interface TransformerStep {
  /** One Adam step on the fixed batch; resolves to the loss before the update. */
  step(): Promise<number>;
  params: number;
  /** Approximate FLOPs of one step (forward matmuls × 3 for forward + backward). */
  flops: number;
  dispose(): void;
}

/** A deterministic integer stream (LCG) so every backend trains on identical tokens. */
function tokens(n: number, vocab: number, seed: number): Int32Array {
  const out = new Int32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s % vocab;
  }
  return out;
}

/** The step's variables, drawn in a fixed order with fixed seeds so every backend starts from the same values. */
function stepVariables(shape: StepShape, seed: number) {
  const { tokens: T, width: C, layers: L, vocab: V } = shape;
  let seq = seed * 1000;
  // tidy frees each initial value once its variable holds the data (a variable is never tidied away).
  const w = (shape: number[], scale: number): tf.Variable =>
    tf.tidy(() => tf.variable(tf.randomNormal(shape, 0, scale, 'float32', seq++)));
  const ones = (n: number): tf.Variable => tf.tidy(() => tf.variable(tf.ones([n])));
  const zeros = (n: number): tf.Variable => tf.tidy(() => tf.variable(tf.zeros([n])));

  const tokEmb = w([V, C], 0.02); // [V, C]
  const posEmb = w([T, C], 0.02); // [T, C]
  const blocks = Array.from({ length: L }, () => ({
    ln1g: ones(C),
    ln1b: zeros(C),
    qkv: w([C, 3 * C], 0.02), // [C, 3C]
    proj: w([C, C], 0.02 / Math.sqrt(2 * L)),
    ln2g: ones(C),
    ln2b: zeros(C),
    fc1: w([C, 4 * C], 0.02),
    fc1b: zeros(4 * C),
    fc2: w([4 * C, C], 0.02 / Math.sqrt(2 * L)),
    fc2b: zeros(C),
  }));
  const lnfg = ones(C);
  const lnfb = zeros(C);
  const head = w([C, V], 0.02); // [C, V]
  return { tokEmb, posEmb, blocks, lnfg, lnfb, head };
}
type StepVariables = ReturnType<typeof stepVariables>;

/** One-hot inputs and next-token targets [B·T, V] of a fixed token stream, and the causal mask [T, T]. */
function stepBatch(shape: StepShape, seed: number) {
  const { batch: B, tokens: T, vocab: V } = shape;
  const ids = tokens(B * (T + 1), V, seed);
  const oneHot = (from: number) =>
    tf.tidy(() =>
      tf
        .oneHot(
          tf
            .tensor2d(ids, [B, T + 1], 'int32')
            .slice([0, from], [B, T])
            .reshape([B * T]),
          V,
        )
        .toFloat(),
    ); // [B·T, V]
  const input = oneHot(0);
  const target = oneHot(1);
  // Causal mask added to scores: 0 on and below the diagonal, -1e9 above.
  const mask = tf.tidy(() =>
    tf.linalg
      .bandPart(tf.ones([T, T]), -1, 0)
      .sub(1)
      .mul(1e9),
  ); // [T, T]
  return { input, target, mask };
}

const layerNorm = (x: tf.Tensor2D, g: tf.Tensor, b: tf.Tensor): tf.Tensor2D =>
  tf.tidy(() => {
    const { mean, variance } = tf.moments(x, -1, true);
    return x.sub(mean).mul(variance.add(1e-5).rsqrt()).mul(g).add(b);
  });

const gelu = (x: tf.Tensor2D): tf.Tensor2D =>
  tf.tidy(() =>
    x.mul(0.5).mul(
      x
        .add(x.mul(x).mul(x).mul(0.044715))
        .mul(Math.sqrt(2 / Math.PI))
        .tanh()
        .add(1),
    ),
  );

/** The forward pass (pre-norm blocks, causal attention, GELU MLP) and its cross-entropy. */
function stepLoss(
  shape: StepShape,
  v: StepVariables,
  { input, target, mask }: ReturnType<typeof stepBatch>,
): () => tf.Scalar {
  const { batch: B, tokens: T, width: C, heads: H } = shape;
  const D = C / H;
  const heads = (x: tf.Tensor2D): tf.Tensor4D => x.reshape([B, T, H, D]).transpose([0, 2, 1, 3]); // [B, H, T, D]
  return () =>
    tf.tidy(() => {
      let x = input
        .matMul(v.tokEmb)
        .reshape([B, T, C])
        .add(v.posEmb)
        .reshape([B * T, C]) as tf.Tensor2D; // [B·T, C]
      for (const p of v.blocks) {
        const [q, k, val] = tf.split(layerNorm(x, p.ln1g, p.ln1b).matMul(p.qkv), 3, 1) as tf.Tensor2D[]; // [B·T, C] each
        const att = tf.softmax(
          tf
            .matMul(heads(q), heads(k), false, true)
            .mul(1 / Math.sqrt(D))
            .add(mask),
        ) as tf.Tensor4D; // [B, H, T, T]
        const y = tf
          .matMul(att, heads(val))
          .transpose([0, 2, 1, 3])
          .reshape([B * T, C]) as tf.Tensor2D; // [B·T, C]
        x = x.add(y.matMul(p.proj));
        const h = gelu(layerNorm(x, p.ln2g, p.ln2b).matMul(p.fc1).add(p.fc1b)); // [B·T, 4C]
        x = x.add(h.matMul(p.fc2).add(p.fc2b));
      }
      const logits = layerNorm(x, v.lnfg, v.lnfb).matMul(v.head); // [B·T, V]
      return tf.losses.softmaxCrossEntropy(target, logits) as tf.Scalar;
    });
}

/** Builds the step's variables and batch on the current backend. */
export function transformerStep(shape: StepShape = benchShape, seed = 1): TransformerStep {
  const { batch: B, tokens: T, width: C, layers: L, heads: H, vocab: V } = shape;
  if (!Number.isInteger(C / H)) throw new StepShapeError(C, H);
  const v = stepVariables(shape, seed);
  const vars = [v.tokEmb, v.posEmb, ...v.blocks.flatMap((b) => Object.values(b)), v.lnfg, v.lnfb, v.head];
  const params = vars.reduce((n, x) => n + x.size, 0);
  const batch = stepBatch(shape, seed);
  const optimizer = tf.train.adam(1e-3);
  const loss = stepLoss(shape, v, batch);

  // Forward matmul FLOPs per token: embedding + per layer (qkv, proj, fc1, fc2, QKᵀ, AV) + head.
  const perToken = 2 * V * C + L * (2 * 12 * C * C + 2 * 2 * T * C) + 2 * C * V;
  return {
    params,
    flops: 3 * perToken * B * T,
    async step() {
      const cost = optimizer.minimize(loss, true, vars);
      if (!cost) throw new Error('optimizer returned no cost');
      const value = (await cost.data())[0];
      cost.dispose();
      return value;
    },
    dispose() {
      optimizer.dispose();
      tf.dispose([...vars, batch.input, batch.target, batch.mask]);
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Measurement.

/** Median seconds per call over `rounds` rounds of `reps` calls, after one untimed call. */
async function secondsPer(fn: () => Promise<void>, reps: number, rounds: number): Promise<number> {
  await fn();
  const per: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let i = 0; i < reps; i++) await fn();
    per.push((performance.now() - t0) / 1000 / reps);
  }
  per.sort((a, b) => a - b);
  return per[Math.floor(per.length / 2)];
}

async function matmulGflops(n: number, reps: number): Promise<number> {
  const a = tf.randomNormal([n, n], 0, 1, 'float32', 1);
  const b = tf.randomNormal([n, n], 0, 1, 'float32', 2);
  const s = await secondsPer(
    async () => {
      const c = tf.matMul(a, b);
      await c.data();
      c.dispose();
    },
    reps,
    3,
  );
  tf.dispose([a, b]);
  return (2 * n ** 3) / s / 1e9;
}

async function conv2dGflops(reps: number): Promise<number> {
  const x = tf.randomNormal<tf.Rank.R4>([8, 32, 32, 64], 0, 1, 'float32', 3); // [N, H, W, Cin]
  const f = tf.randomNormal<tf.Rank.R4>([3, 3, 64, 64], 0, 0.1, 'float32', 4); // [kh, kw, Cin, Cout]
  const s = await secondsPer(
    async () => {
      const y = tf.conv2d(x, f, 1, 'same');
      await y.data();
      y.dispose();
    },
    reps,
    3,
  );
  tf.dispose([x, f]);
  return (2 * 8 * 32 * 32 * 64 * 64 * 9) / s / 1e9;
}

interface BackendFigures {
  matmulGflops: number;
  conv2dGflops: number;
  stepSeconds: number;
  /** CPU time (all threads) per step: robust to other processes' load, unlike the wall time. */
  stepCpuSeconds: number;
  stepGflops: number;
  firstLoss: number;
  stepLeakedTensors: number;
}

async function measureBackend(steps: number, reps: number): Promise<BackendFigures> {
  const matmul = await matmulGflops(1024, reps);
  const conv = await conv2dGflops(reps);
  const model = transformerStep();
  const firstLoss = await model.step(); // also the warm-up
  const before = tf.memory().numTensors;
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  for (let i = 0; i < steps; i++) await model.step();
  const stepSeconds = (performance.now() - t0) / 1000 / steps;
  const cpu = process.cpuUsage(c0);
  const stepCpuSeconds = (cpu.user + cpu.system) / 1e6 / steps;
  const leaked = tf.memory().numTensors - before;
  model.dispose();
  return {
    matmulGflops: matmul,
    conv2dGflops: conv,
    stepSeconds,
    stepCpuSeconds,
    stepGflops: model.flops / stepSeconds / 1e9,
    firstLoss,
    stepLeakedTensors: leaked,
  };
}

/** numpy float32 matmul in a subprocess: the best of 5 rounds of 10. */
function numpyGflops(python: string): { gflops: number; numpy: string } | { error: string } {
  const code = [
    'import time, numpy as np',
    'n = 1024',
    'a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32); a @ b',
    'best = 0',
    'for _ in range(5):',
    '    t = time.perf_counter()',
    '    for _ in range(10): a @ b',
    '    best = max(best, 2 * n**3 / ((time.perf_counter() - t) / 10) / 1e9)',
    'print(best, np.__version__)',
  ].join('\n');
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 120_000 });
  if (r.error) return { error: `${python}: ${r.error.message}` };
  if (r.status !== 0)
    return { error: `${python}: ${r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`}` };
  const [g, v] = r.stdout.trim().split(' ');
  return { gflops: Number(g), numpy: v };
}

/** A python with numpy: --python, else $DALLE_PYTHON, else the native cache's venv, else python3. */
function findPython(flag: string | undefined): string {
  if (flag) return flag;
  if (process.env.DALLE_PYTHON) return process.env.DALLE_PYTHON;
  const cache =
    process.env.DALLE_NATIVE_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dalle-native');
  const venv = join(cache, 'venv', 'bin', 'python');
  return existsSync(venv) ? venv : 'python3';
}

async function loadNative(): Promise<{ pkg: string; version: string; gpu: boolean } | { error: string }> {
  const errors: string[] = [];
  for (const pkg of nativePackages) {
    try {
      await import(pkg); // a variable specifier: optional packages, absent from package.json
      await tf.setBackend('tensorflow');
      const b = tf.backend() as unknown as { binding: { TF_Version: string }; isUsingGpuDevice: boolean };
      return { pkg, version: b.binding.TF_Version, gpu: b.isUsingGpuDevice };
    } catch (e) {
      errors.push(`${pkg}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return { error: errors.join('; ') };
}

export const cli = command({
  name: 'bench native',
  summary: 'native TensorFlow vs wasm vs cpu on matmul, conv2d and a transformer-like step, next to numpy',
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    backends: {
      type: 'string',
      value: 'list',
      help: `comma list of ${tfBackendNames.join(', ')} (default all)`,
    },
    steps: {
      type: 'string',
      value: 'N',
      help: 'timed steps on every backend (default tensorflow 10, wasm 2, cpu 1)',
    },
    python: {
      type: 'string',
      value: 'PATH',
      help: "the python with numpy for the peak matmul (default: the installer's)",
    },
    quick: { type: 'boolean', help: 'fewer timing rounds' },
  },
});

function options(argv: string[]) {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  const n = read.int('steps', values.steps, 1);
  return {
    json: !!values.json,
    backends: read.choices('backends', values.backends, tfBackendNames) ?? [...tfBackendNames],
    steps: (n === undefined ? {} : { tensorflow: n, wasm: n, cpu: n }) as Partial<Record<Backend, number>>,
    python: values.python,
    quick: !!values.quick,
  };
}

/** Each requested backend that initializes: its matmul, conv2d and training-step figures. */
async function measureBackends(
  backends: Backend[],
  steps: Record<Backend, number>,
  reps: Record<Backend, number>,
  say: (s: string) => void,
) {
  const native = backends.includes('tensorflow') ? await loadNative() : { error: 'not requested' };
  if ('pkg' in native)
    say(`native: ${native.pkg} on TensorFlow ${native.version}${native.gpu ? ' (GPU)' : ' (CPU)'}`);
  else say(`native: unavailable (${native.error}); run infra/native/install-tfjs-node.sh`);
  if (backends.includes('wasm')) await import('@tensorflow/tfjs-backend-wasm');

  const results: Partial<Record<Backend, BackendFigures>> = {};
  for (const b of backends) {
    if (b === 'tensorflow' && !('pkg' in native)) continue;
    if (!(await tf.setBackend(b))) {
      say(`${b}: failed to initialize, skipped`);
      continue;
    }
    await tf.ready();
    say(`measuring ${b} (${steps[b]} timed step${steps[b] > 1 ? 's' : ''}) …`);
    results[b] = await measureBackend(steps[b], reps[b]);
  }
  return { native, results };
}

/** The figures as a table, then the ratios against their goals. */
function printReport(
  results: Partial<Record<Backend, BackendFigures>>,
  ratios: Record<
    'stepNativeOverWasm' | 'stepCpuTimeWasmOverNative' | 'matmulNativeOverNumpy' | 'conv2dNativeOverWasm',
    number | null
  >,
  params: number,
  loadBefore: number,
  loadAfter: number,
): void {
  console.log(
    `\ntransformer-like step: ${(params / 1e6).toFixed(2)}M params, batch ${benchShape.batch} × ${benchShape.tokens} tokens, width ${benchShape.width}, ${benchShape.layers} layers, Adam`,
  );
  console.log(
    'backend     matmul 1024²     conv2d 3×3 64→64   train step (wall)          cpu s/step  first loss  leaked',
  );
  for (const [b, r] of Object.entries(results)) {
    console.log(
      `${b.padEnd(11)} ${r.matmulGflops.toFixed(1).padStart(6)} GFLOP/s ${r.conv2dGflops.toFixed(1).padStart(8)} GFLOP/s ` +
        `${r.stepSeconds.toFixed(3).padStart(9)} s (${r.stepGflops.toFixed(1).padStart(5)} GFLOP/s) ` +
        `${r.stepCpuSeconds.toFixed(3).padStart(9)} ${r.firstLoss.toFixed(5).padStart(11)} ${String(r.stepLeakedTensors).padStart(7)}`,
    );
  }
  const times = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(1)}×`);
  const percent = (x: number | null): string => (x === null ? 'n/a' : `${(100 * x).toFixed(0)} %`);
  console.log(
    `\nload average ${loadBefore.toFixed(1)} before, ${loadAfter.toFixed(1)} after, ${availableParallelism()} cores`,
  );
  console.log(`native / wasm, training step: ${times(ratios.stepNativeOverWasm)} (goal ≥ 30×)`);
  console.log(`  by cpu time per step:       ${times(ratios.stepCpuTimeWasmOverNative)}`);
  console.log(`native / numpy, matmul 1024²: ${percent(ratios.matmulNativeOverNumpy)} (goal ≥ 50 %)`);
  console.log(`native / wasm, conv2d:        ${times(ratios.conv2dNativeOverWasm)}`);
}

export async function main(argv: string[]): Promise<void> {
  const args = options(argv);
  // Timed steps per backend: enough to average, few enough that the cpu backend (~1 min/step) ends.
  const steps: Record<Backend, number> = { tensorflow: 10, wasm: 2, cpu: 1, ...args.steps };
  // Calls per timing round of matmul and conv2d (3 rounds, median): the cpu backend needs ~10 s a matmul.
  const reps: Record<Backend, number> = args.quick
    ? { tensorflow: 1, wasm: 1, cpu: 1 }
    : { tensorflow: 5, wasm: 3, cpu: 1 };
  const say = (s: string): void => {
    if (!args.json) console.log(s);
  };

  const loadBefore = loadavg()[0];
  say(
    `load average ${loadBefore.toFixed(1)} on ${availableParallelism()} cores${loadBefore > availableParallelism() ? ': shared machine, wall times are inflated; compare ratios and cpu s/step' : ''}`,
  );
  const python = findPython(args.python);
  const numpyBefore = numpyGflops(python);
  say(
    'numpy' in numpyBefore
      ? `numpy ${numpyBefore.numpy} (${python}) matmul 1024²: ${numpyBefore.gflops.toFixed(1)} GFLOP/s`
      : `numpy: unavailable (${numpyBefore.error})`,
  );

  const { native, results } = await measureBackends(args.backends, steps, reps, say);

  // numpy again at the end; the ratio uses the better of the two, which is the harder bar.
  const numpyAfter = 'gflops' in numpyBefore ? numpyGflops(python) : numpyBefore;
  const numpy =
    'gflops' in numpyAfter && 'gflops' in numpyBefore && numpyAfter.gflops > numpyBefore.gflops
      ? numpyAfter
      : numpyBefore;
  if ('gflops' in numpyAfter) say(`numpy matmul 1024² again: ${numpyAfter.gflops.toFixed(1)} GFLOP/s`);
  const loadAfter = loadavg()[0];

  const nat = results.tensorflow;
  const wasm = results.wasm;
  const ratios = {
    stepNativeOverWasm: nat && wasm ? wasm.stepSeconds / nat.stepSeconds : null,
    stepCpuTimeWasmOverNative: nat && wasm ? wasm.stepCpuSeconds / nat.stepCpuSeconds : null,
    matmulNativeOverNumpy: nat && 'gflops' in numpy ? nat.matmulGflops / numpy.gflops : null,
    conv2dNativeOverWasm: nat && wasm ? nat.conv2dGflops / wasm.conv2dGflops : null,
  };
  const params = transformerParams();
  if (args.json) {
    console.log(
      JSON.stringify({
        numpy,
        numpyRuns: [numpyBefore, numpyAfter],
        load: { before: loadBefore, after: loadAfter, cores: availableParallelism() },
        native,
        params,
        steps,
        backends: results,
        ratios,
        goals: { stepNativeOverWasm: 30, matmulNativeOverNumpy: 0.5 },
      }),
    );
    return;
  }
  printReport(results, ratios, params, loadBefore, loadAfter);
}

/** Parameter count of a step shape, computed without allocating tensors. */
export function transformerParams(s: StepShape = benchShape): number {
  const C = s.width;
  return 2 * s.vocab * C + s.tokens * C + s.layers * (12 * C * C + 9 * C) + 2 * C;
}
