import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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
