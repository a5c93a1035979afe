// Picks the tfjs backend once per process: native TensorFlow when its binding is installed (GPU workers),
// else wasm (with our kernels for what it lacks), else the pure-JS cpu backend.
//
//   order: prefer argument › DALLE_BACKEND › auto (tfjs-node-gpu, tfjs-node, wasm, cpu)
//
// tfjs-node(-gpu) cannot be installed on machines without access to TensorFlow's download host, so it is
// never a dependency: it is imported dynamically and skipped (with the reason at debug level) when absent
// or broken. A forced backend that cannot start is an error, never a silent fallback.
//
// Threads: native TensorFlow runs each kernel on an intra-op pool sized when the library loads (default:
// every core). `DALLE_THREADS=N` sizes it (and the inter-op pool to 1: ops are issued one at a time from
// the JS thread), so that W processes on one host can share its cores without oversubscribing them.
// wasm and cpu run on the JS thread alone and ignore it.
//
// These settings reach TensorFlow through the process's environment. A worker thread's process.env is
// its own copy, so from a worker they must already be in the environment the process started with: there
// a missing one is an error (TensorFlow would load with its defaults, two intra-op threads and oneDNN
// rebuilding its gradients per call: a step 1.4–1.8× slower, and heap corruption seen under a profiler).
import { createRequire } from 'node:module';
import { isMainThread } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import { registerWasmKernels } from './kernels/index.ts';

export const tfBackendNames = ['tensorflow', 'wasm', 'cpu'] as const;
export type TfBackendName = (typeof tfBackendNames)[number];

/** An unknown backend name was asked for. */
export class TfBackendNameError extends Error {
  override name = 'TfBackendNameError';
  constructor(
    readonly requested: string,
    readonly source: 'argument' | 'DALLE_BACKEND',
  ) {
    super(`unknown tfjs backend "${requested}" (from ${source}); use one of ${tfBackendNames.join(', ')}`);
  }
}

/** A forced backend could not be started; `reasons` says why for each package tried. */
export class TfBackendUnavailableError extends Error {
  override name = 'TfBackendUnavailableError';
  constructor(
    readonly requested: TfBackendName,
    readonly reasons: string[],
  ) {
    super(
      `tfjs backend "${requested}" was forced but cannot start:\n${reasons.map((r) => `  - ${r}`).join('\n')}`,
    );
  }
}

/** DALLE_THREADS is not a positive integer. */
export class BackendThreadsError extends Error {
  override name = 'BackendThreadsError';
  constructor(readonly value: string) {
    super(`DALLE_THREADS = "${value}": must be a positive integer (intra-op threads of the native backend)`);
  }
}

/** The native backend was started in a worker thread whose process environment lacks its settings. */
export class NativeSettingsError extends Error {
  override name = 'NativeSettingsError';
  constructor(readonly missing: [string, string][]) {
    super(
      'the native backend in a worker thread: TensorFlow reads its settings from the process environment, ' +
        "which a worker's process.env (a copy) does not change; start the process with " +
        missing.map(([k, v]) => `${k}=${v}`).join(' '),
    );
  }
}

/** The intra-op thread count DALLE_THREADS asks for; undefined when unset (TensorFlow's default). */
export function requestedThreads(): number | undefined {
  const v = process.env.DALLE_THREADS;
  if (v === undefined || v.trim() === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new BackendThreadsError(v);
  return n;
}

/** Settings TensorFlow reads once, when the library loads: its thread pools, and oneDNN, whose fused
 *  kernels model/ops uses (TensorFlow enables oneDNN by default only on some CPUs). oneDNN's convolution
 *  gradients are built anew on every call unless TF_MKL_OPTIMIZE_PRIMITIVE_MEMUSE is false, which keeps
 *  them by shape: ~100 µs less per Conv2DBackpropFilter on the small shapes of a dVAE step, the same
 *  resident memory on the shapes preset (docs/performance.md). Explicit values of either are left as
 *  they are. */
export function nativeSettings(): Record<string, string> {
  const settings: Record<string, string> = {
    TF_ENABLE_ONEDNN_OPTS: process.env.TF_ENABLE_ONEDNN_OPTS ?? '1',
    TF_MKL_OPTIMIZE_PRIMITIVE_MEMUSE: process.env.TF_MKL_OPTIMIZE_PRIMITIVE_MEMUSE ?? 'false',
  };
  const n = requestedThreads();
  if (n !== undefined) {
    settings.TF_NUM_INTRAOP_THREADS = String(n);
    settings.TF_NUM_INTEROP_THREADS = '1';
  }
  return settings;
}

const nativePackages = ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node'];

/** Puts nativeSettings() where TensorFlow will read them; from a worker thread, checks they are there. */
function configureNative(): void {
  if (isMainThread) {
    Object.assign(process.env, nativeSettings());
    return;
  }
  const missing = missingNativeSettings();
  if (missing.length > 0 && nativePackages.some(resolvable)) throw new NativeSettingsError(missing);
}

/** The nativeSettings() this thread's process.env does not hold, as [name, value]. */
export function missingNativeSettings(): [string, string][] {
  return Object.entries(nativeSettings()).filter(([k, v]) => process.env[k] !== v);
}

function resolvable(pkg: string): boolean {
  try {
    createRequire(import.meta.url).resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

const debug = (msg: string): void => {
  if (process.env.DALLE_LOG_LEVEL === 'debug') process.stderr.write(`[debug] backend: ${msg}\n`);
};

/** Loads tfjs-node-gpu or tfjs-node (registers the 'tensorflow' backend); returns the package loaded. */
async function loadNative(reasons: string[]): Promise<string | undefined> {
  configureNative();
  for (const pkg of nativePackages) {
    try {
      // A variable specifier: these packages are optional and absent from package.json.
      await import(pkg);
      if (tf.findBackendFactory('tensorflow')) return pkg;
      reasons.push(`${pkg}: imported but registered no 'tensorflow' backend`);
    } catch (e) {
      reasons.push(`${pkg}: ${firstLine(e)}`);
    }
  }
  return undefined;
}

async function loadWasm(reasons: string[]): Promise<boolean> {
  try {
    await import('@tensorflow/tfjs-backend-wasm');
    return true;
  } catch (e) {
    reasons.push(`@tensorflow/tfjs-backend-wasm: ${firstLine(e)}`);
    return false;
  }
}

/** tf.setBackend resolves false (or throws) when a backend's init fails. */
async function trySet(name: TfBackendName, reasons: string[]): Promise<boolean> {
  try {
    if (await tf.setBackend(name)) {
      await tf.ready();
      return true;
    }
    reasons.push(`${name}: initialization failed`);
  } catch (e) {
    reasons.push(`${name}: ${firstLine(e)}`);
  }
  return false;
}

async function start(name: TfBackendName, reasons: string[]): Promise<boolean> {
  switch (name) {
    case 'tensorflow': {
      const pkg = await loadNative(reasons);
      if (!pkg) return false;
      if (!(await trySet('tensorflow', reasons))) return false;
      debug(`tensorflow backend from ${pkg}, ${requestedThreads() ?? 'all'} intra-op thread(s)`);
      return true;
    }
    case 'wasm': {
      if (!(await loadWasm(reasons)) || !(await trySet('wasm', reasons))) return false;
      // After init: replacing a stock kernel must not skip its setup (see kernels/index.ts).
      registerWasmKernels();
      return true;
    }
    case 'cpu':
      return trySet('cpu', reasons);
  }
}

function parseName(v: string, source: 'argument' | 'DALLE_BACKEND'): TfBackendName {
  const n = v.trim().toLowerCase();
  if ((tfBackendNames as readonly string[]).includes(n)) return n as TfBackendName;
  throw new TfBackendNameError(v, source);
}

const chosen = new Map<string, Promise<string>>();

/**
 * Chooses and initializes the tfjs backend; returns its name ('tensorflow' | 'wasm' | 'cpu').
 * `prefer` (e.g. a CLI flag) or else `DALLE_BACKEND` forces one; otherwise the fastest that starts.
 * Idempotent: a repeated request does no new work and logs nothing (it re-activates its backend if
 * something switched away from it in between).
 */
export async function initTfBackend(prefer?: string): Promise<string> {
  const fromArg = prefer !== undefined && prefer !== '';
  const env = process.env.DALLE_BACKEND;
  const forced = fromArg ? parseName(prefer, 'argument') : env ? parseName(env, 'DALLE_BACKEND') : undefined;
  const key = forced ?? 'auto';
  let p = chosen.get(key);
  if (!p) {
    p = choose(forced, fromArg ? 'argument' : 'DALLE_BACKEND');
    chosen.set(key, p);
    // A failed start may succeed later (e.g. after installing a package): do not cache failures.
    p.catch(() => chosen.delete(key));
    return p;
  }
  const name = await p;
  if (tf.getBackend() !== name) await tf.setBackend(name);
  return name;
}

async function choose(forced: TfBackendName | undefined, source: string): Promise<string> {
  // tfjs prints a "use tfjs-node" banner on first cpu use unless PROD is set; we log our own choice.
  tf.env().set('PROD', true);
  const reasons: string[] = [];
  if (forced) {
    if (!(await start(forced, reasons))) throw new TfBackendUnavailableError(forced, reasons);
    log(forced, `forced by ${source}`);
    return forced;
  }
  for (const name of tfBackendNames) {
    if (await start(name, reasons)) {
      for (const r of reasons) debug(`skipped ${r}`);
      log(
        name,
        reasons.length > 0
          ? `after skipping ${reasons.length} option(s); DALLE_LOG_LEVEL=debug says why`
          : 'first choice',
      );
      return name;
    }
  }
  throw new TfBackendUnavailableError('cpu', reasons);
}

let lastLogged: string | undefined;
function log(name: string, why: string): void {
  if (lastLogged === name) return;
  lastLogged = name;
  if (process.env.DALLE_LOG_LEVEL !== 'silent') process.stderr.write(`tfjs backend: ${name} (${why})\n`);
}

function firstLine(e: unknown): string {
  return String((e as Error)?.message ?? e).split('\n')[0]!;
}
