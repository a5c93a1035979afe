// sampler: the two commands as a user runs them: `dalle sampler` on a local store folder, `dalle generate`
// against it (PNGs + grid on disk, --json metadata, exit codes), SIGTERM drains and exits 0.
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { openStores } from '../store/index.ts';
import { publishTinyBundle } from './fixtures/tiny-bundle.ts';
import { waitFor } from './fixtures/sampler-harness.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const dalle = join(root, 'bin', 'dalle.js');

function runDalle(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(process.execPath, [dalle, ...args], { cwd: root, timeout: 120_000 }, (e, stdout, stderr) =>
      resolve({ code: e ? Number(e.code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

test('sampler: dalle sampler + dalle generate write PNGs and a grid; SIGTERM drains', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sampler-cli-'));
  const store = join(dir, 'store');
  const { models } = await openStores({ dir: store });
  await publishTinyBundle(models, 'dalle');
  const server = spawn(process.execPath, [dalle, 'sampler', '--store', store, '--port', '0'], {
    cwd: root,
    env: { ...process.env, DALLE_SAMPLER_ADDRESS: '127.0.0.1:50051' },
  });
  let out = '';
  let err = '';
  server.stdout.on('data', (b) => (out += b));
  server.stderr.on('data', (b) => (err += b));
  const exited = new Promise<number | null>((r) => server.on('exit', (c) => r(c)));
  try {
    await waitFor(
      () => /listening on 127\.0\.0\.1:(\d+)/.test(err) && out.includes('"model serving"'),
      `the sampler to serve (stderr: ${err})`,
      60_000,
    );
    const address = `127.0.0.1:${/listening on 127\.0\.0\.1:(\d+)/.exec(err)![1]}`;

    const outDir = join(dir, 'out');
    const r = await runDalle([
      'generate',
      'a large red circle',
      '-n',
      '3',
      '--seed',
      '7',
      '--out',
      outDir,
      '--server',
      address,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stderr);
    const meta = JSON.parse(r.stdout) as {
      model: { name: string; version: number };
      images: { index: number; seed: number; path: string; score: number }[];
      grid: string;
    };
    assert.deepEqual(meta.model, { name: 'dalle', version: 1 });
    assert.deepEqual(
      meta.images.map((i) => [i.index, i.seed]),
      [
        [0, 7],
        [1, 8],
        [2, 9],
      ],
    );
    for (const img of meta.images) {
      assert.ok(existsSync(img.path), img.path);
      assert.deepEqual(readFileSync(img.path).subarray(1, 4).toString(), 'PNG');
    }
    const grid = await sharp(meta.grid).metadata();
    assert.deepEqual(
      [grid.format, grid.width, grid.height],
      ['png', 2 * 16 + 2, 2 * 16 + 2],
      '3 images → 2 × 2 grid of 16 px tiles, 2 px gaps',
    );

    // Same seed from the CLI again: the same bytes.
    const again = await runDalle([
      'generate',
      'a large red circle',
      '-n',
      '1',
      '--seed',
      '8',
      '--out',
      join(dir, 'again'),
      '--server',
      address,
      '--json',
    ]);
    const one = JSON.parse(again.stdout) as { images: { path: string }[] };
    assert.deepEqual(
      readFileSync(one.images[0]!.path),
      readFileSync(meta.images[1]!.path),
      'image 1 of seed 7 = image 0 of seed 8',
    );

    const plain = await runDalle([
      'generate',
      'a small blue square',
      '--out',
      join(dir, 'plain'),
      '--server',
      address,
    ]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /4 image\(s\) from dalle v1 in [\d.]+ s/);

    const bad = await runDalle(['generate', 'a red circle', '-n', '17', '--server', address]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /INVALID_ARGUMENT: num_images: must be between 1 and 16, got 17/);
    const usage = await runDalle(['generate', '--seed', 'x', 'a red circle']);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--seed must be a non-negative integer/);

    server.kill('SIGTERM');
    assert.equal(await exited, 0, err);
    assert.match(err, /SIGTERM: draining/);
    assert.ok(out.includes('"sampler stopped"'));
  } finally {
    if (server.exitCode === null) server.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
});
