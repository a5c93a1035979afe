// The native installer fails fast, before any download, naming what is wrong with its arguments.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import assert from 'node:assert/strict';

const script = fileURLToPath(new URL('../infra/native/install-tfjs-node.sh', import.meta.url));

function install(...args: string[]): { status: number | null; stderr: string; ms: number } {
  const t0 = Date.now();
  const r = spawnSync('bash', [script, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stderr: r.stderr, ms: Date.now() - t0 };
}

test('native: installer refuses TensorFlow before 2.12 and says the C API there needs libpython', () => {
  const r = install('--tf', '2.9.1');
  assert.equal(r.status, 1);
  assert.match(r.stderr, /TensorFlow 2\.9\.1/);
  assert.match(r.stderr, /_pywrap_tensorflow_internal\.so/);
  assert.match(r.stderr, /PyTuple_Type/);
  assert.ok(r.ms < 10_000, `took ${r.ms} ms: it must fail before downloading`);
});

test('native: installer rejects an unknown variant, a malformed version and an unknown flag', () => {
  const variant = install('--variant', 'tpu');
  assert.equal(variant.status, 1);
  assert.match(variant.stderr, /--variant must be cpu or gpu, got 'tpu'/);

  const version = install('--tf', 'latest');
  assert.equal(version.status, 1);
  assert.match(version.stderr, /--tf must look like 2\.18\.1, got 'latest'/);

  const flag = install('--gpu');
  assert.equal(flag.status, 1);
  assert.match(flag.stderr, /unknown argument '--gpu'/);
});

test('native: installer names a project without node_modules instead of building into it', () => {
  const r = install('--project', fileURLToPath(new URL('../infra/native', import.meta.url)));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /node_modules\/@tensorflow\/tfjs is missing: run 'npm install'/);
});
