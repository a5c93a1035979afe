// cli: the client commands load neither TensorFlow.js nor the Temporal worker. `dalle train`, `status` and
// `generate` only talk to servers; loading tfjs (hundreds of modules, a wasm backend) or @temporalio/worker
// (every activity, the native bridge) would cost every invocation seconds for nothing. Each command's module
// is imported in a fresh node and the packages that got loaded are read from the module cache (tfjs and the
// worker are CommonJS, so every file of theirs lands there even when imported from ESM).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const HEAVY = ['@tensorflow/tfjs-core', '@temporalio/worker'];

/** npm packages loaded by importing `file` (relative to the repository root) in a fresh process: a `.ts`
 *  source through tsx, a compiled `.js` file of dist/ by plain node (as bin/dalle.js runs it). */
function packagesLoadedBy(file: string): string[] {
  const script = `
    import { createRequire } from 'node:module';
    await import(${JSON.stringify(`./${file}`)});
    const files = Object.keys(createRequire(import.meta.url).cache);
    const names = files.map((f) => /node_modules\\/((?:@[^/]+\\/)?[^/]+)/.exec(f)?.[1]).filter(Boolean);
    console.log(JSON.stringify([...new Set(names)]));`;
  const loader = file.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const r = spawnSync(process.execPath, [...loader, '--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(r.status, 0, `importing ${file}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!) as string[];
}

test('cli: the probe sees tfjs and the Temporal worker where they are loaded', () => {
  const loaded = packagesLoadedBy('services/worker/worker.ts');
  for (const p of HEAVY) assert.ok(loaded.includes(p), `worker.ts loads ${p}: ${loaded.join(' ')}`);
});

for (const cmd of ['train', 'status', 'generate']) {
  test(`cli: dalle ${cmd} loads neither TensorFlow.js nor @temporalio/worker`, () => {
    const loaded = packagesLoadedBy(`services/cli/${cmd}.ts`);
    for (const p of HEAVY) assert.ok(!loaded.includes(p), `dalle ${cmd} loads ${p}`);
  });
}

// What users run: the compiled commands (npm test builds dist/ first) import nothing through tsx (a `.ts`
// import would fail without its loader) and stay as light as their sources.
for (const cmd of ['commands', 'train', 'status', 'generate']) {
  test(`cli: the compiled ${cmd}.js runs without tsx and loads neither TensorFlow.js nor @temporalio/worker`, () => {
    const loaded = packagesLoadedBy(`dist/services/cli/${cmd}.js`);
    for (const p of [...HEAVY, 'tsx']) assert.ok(!loaded.includes(p), `dist ${cmd}.js loads ${p}`);
    assert.ok(loaded.includes('yaml'), `the probe saw what ${cmd}.js loads: ${loaded.join(' ')}`);
  });
}

test('cli: the web console server loads neither TensorFlow.js nor @temporalio/worker', () => {
  const loaded = packagesLoadedBy('services/console/server.ts');
  for (const p of HEAVY) assert.ok(!loaded.includes(p), `the console loads ${p}`);
  assert.ok(
    loaded.includes('@temporalio/client'),
    `the probe saw what the console loads: ${loaded.join(' ')}`,
  );
});
