import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { TfBackendNameError, TfBackendUnavailableError, initTfBackend } from './tf-backend.ts';

async function nativeInstalled(): Promise<boolean> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg);
      return true;
    } catch {
      // absent or broken: not usable
    }
  }
  return false;
}

function withEnv<T>(value: string | undefined, fn: () => T): T {
  const old = process.env.DALLE_BACKEND;
  if (value === undefined) delete process.env.DALLE_BACKEND;
  else process.env.DALLE_BACKEND = value;
  try {
    return fn();
  } finally {
    if (old === undefined) delete process.env.DALLE_BACKEND;
    else process.env.DALLE_BACKEND = old;
  }
}

test('backend: auto picks native TensorFlow when installed, else wasm, and is idempotent', async () => {
  const name = await withEnv(undefined, () => initTfBackend());
  assert.equal(await withEnv(undefined, () => initTfBackend()), name);
  assert.equal(name, (await nativeInstalled()) ? 'tensorflow' : 'wasm');
  assert.equal(tf.getBackend(), name);
});

test('backend: DALLE_BACKEND forces one, and an explicit argument beats it', async () => {
  assert.equal(await withEnv('cpu', () => initTfBackend()), 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
  assert.equal(await withEnv(' WASM ', () => initTfBackend()), 'wasm');
  assert.equal(tf.getBackend(), 'wasm');
  assert.equal(await withEnv('wasm', () => initTfBackend('cpu')), 'cpu');
  assert.equal(tf.getBackend(), 'cpu');
});

test('backend: unknown names are refused naming their source', async () => {
  await assert.rejects(
    withEnv('gpu', () => initTfBackend()),
    (e: unknown) =>
      e instanceof TfBackendNameError && e.source === 'DALLE_BACKEND' && /"gpu"/.test(e.message),
  );
  await assert.rejects(
    initTfBackend('webgl'),
    (e: unknown) => e instanceof TfBackendNameError && e.source === 'argument',
  );
});

test('backend: forcing tensorflow without tfjs-node is an error that says why', async (t) => {
  if (await nativeInstalled()) return t.skip('tfjs-node is installed here');
  await assert.rejects(
    withEnv(undefined, () => initTfBackend('tensorflow')),
    (e: unknown) =>
      e instanceof TfBackendUnavailableError &&
      e.reasons.length === 2 &&
      /tfjs-node-gpu/.test(e.reasons[0]!) &&
      /tfjs-node:/.test(e.reasons[1]!),
  );
});

test('backend: the choice is logged once per process, skipped options only at debug level', () => {
  const script =
    "import { initTfBackend } from './model/tf-backend.ts'; await initTfBackend(); await initTfBackend(); await initTfBackend();";
  const stderrOf = (level: string): string => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url).pathname,
      env: { ...process.env, DALLE_BACKEND: '', DALLE_LOG_LEVEL: level },
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    return r.stderr;
  };
  const quiet = stderrOf('info');
  assert.equal(quiet.match(/^tfjs backend: /gm)?.length, 1, quiet);
  assert.doesNotMatch(quiet, /\[debug\]/);
  const loud = stderrOf('debug');
  assert.equal(loud.match(/^tfjs backend: /gm)?.length, 1, loud);
  if (/tfjs backend: wasm/.test(loud))
    assert.match(loud, /\[debug\] backend: skipped @tensorflow\/tfjs-node-gpu: /);
});

test('backend: DALLE_THREADS sizes the native thread pools before TensorFlow loads, and is checked', () => {
  const script =
    "import { initTfBackend } from './model/tf-backend.ts'; await initTfBackend(); const e = process.env; console.log(e.TF_NUM_INTRAOP_THREADS, e.TF_NUM_INTEROP_THREADS, e.TF_ENABLE_ONEDNN_OPTS, e.TF_MKL_OPTIMIZE_PRIMITIVE_MEMUSE);";
  const run = (threads: string, memUse?: string) =>
    spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: new URL('..', import.meta.url).pathname,
      env: {
        ...process.env,
        DALLE_BACKEND: '',
        DALLE_THREADS: threads,
        DALLE_LOG_LEVEL: 'silent',
        TF_MKL_OPTIMIZE_PRIMITIVE_MEMUSE: memUse,
      },
      encoding: 'utf8',
    });
  const ok = run('1');
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), '1 1 1 false'); // oneDNN keeps its convolution gradients by shape
  assert.equal(run('1', 'true').stdout.trim(), '1 1 1 true'); // an explicit choice is left as it is
  const bad = run('two');
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /DALLE_THREADS = "two": must be a positive integer/);
});

test('backend: in a worker thread the native settings must already be in the process environment', async () => {
  // A worker's process.env is its own copy: what the backend would set there never reaches TensorFlow,
  // which then loads with its defaults (measured: a step 1.4× slower). Each case runs in a child process
  // whose environment is exactly the one given, the backend started in a worker of it.
  const native = await nativeInstalled();
  const dir = mkdtempSync(join(tmpdir(), 'dalle-backend-worker-'));
  try {
    // Plain JS that registers tsx itself: a worker does not take the parent's `--import tsx`.
    const worker = join(dir, 'worker.mjs');
    const backend = new URL('./tf-backend.ts', import.meta.url).pathname;
    const tsx = import.meta.resolve('tsx/esm/api');
    writeFileSync(
      worker,
      `import { parentPort } from 'node:worker_threads';
const { register } = await import(${JSON.stringify(tsx)});
register();
const { initTfBackend, missingNativeSettings } = await import(${JSON.stringify(backend)});
const missing = missingNativeSettings();
const started = await initTfBackend(process.env.PREFER).catch((e) => e.name + ': ' + e.message);
parentPort.postMessage({ missing, started });
`,
    );
    const main = `import { Worker } from 'node:worker_threads';
new Worker(${JSON.stringify(worker)}, { execArgv: [] }).on('message', (m) => { console.log(JSON.stringify(m)); process.exit(0); });`;
    const run = (prefer: string, set: Record<string, string>) => {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        DALLE_LOG_LEVEL: 'silent',
        DALLE_THREADS: '1',
        PREFER: prefer,
      };
      for (const k of Object.keys(env)) if (k.startsWith('TF_') || k === 'DALLE_BACKEND') delete env[k];
      const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', main], {
        env: { ...env, ...set },
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, r.stderr);
      return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { missing: string[][]; started: string };
    };
    const settings = {
      TF_ENABLE_ONEDNN_OPTS: '1',
      TF_MKL_OPTIMIZE_PRIMITIVE_MEMUSE: 'false',
      TF_NUM_INTRAOP_THREADS: '1',
      TF_NUM_INTEROP_THREADS: '1',
    };
    const bare = run('tensorflow', {});
    assert.deepEqual(Object.fromEntries(bare.missing), settings);
    if (native) {
      assert.match(bare.started, /^NativeSettingsError: .*start the process with .*TF_NUM_INTRAOP_THREADS=1/);
      // Auto-selection does not fall back to wasm over it either.
      assert.match(run('', {}).started, /^NativeSettingsError/);
      const ready = run('tensorflow', settings);
      assert.deepEqual(ready.missing, []);
      assert.equal(ready.started, 'tensorflow');
    } else {
      // Nothing native to misconfigure: the forced backend is unavailable as anywhere, auto picks wasm.
      assert.match(bare.started, /^TfBackendUnavailableError/);
      assert.equal(run('', {}).started, 'wasm');
      assert.deepEqual(run('', settings).missing, []);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
