// `dalle eval` on a real published bundle (tiny preset, untrained weights: the wiring is under test, not
// the accuracy): in this process through the sampler's own model code, over gRPC through a real sampler
// server, and as the CLI a user runs. Same seed, same images: both paths must judge every image alike.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSpec } from '../config/index.ts';
import { ALL_COMPOSITIONS, shapeCaptions } from '../data/shapes.ts';
import { Tokenizer } from '../data/tokenizer.ts';
import {
  dvaeParamSpecs,
  encodeState,
  initDvaeParams,
  initTfBackend,
  initTransformerParams,
  transformerParamSpecs,
} from '../model/index.ts';
import {
  bundleDvae,
  evaluateShapes,
  grpcGenerator,
  samplingModelGenerator,
  type GenerateFn,
} from '../eval/index.ts';
import { SamplerService } from '../services/sampler/server.ts';
import { loadBundleModel } from '../services/sampler/tf-engine.ts';
import { encodeBundle, openStores } from '../store/index.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

/** A generator that also records every image it returns. */
const keep =
  (into: Uint8Array[], g: GenerateFn): GenerateFn =>
  async (prompts, n, seed) => {
    const out = await g(prompts, n, seed);
    into.push(...out);
    return out;
  };
const localImages: Uint8Array[] = [];
const grpcImages: Uint8Array[] = [];

async function publishTinyBundle(dir: string): Promise<Uint8Array> {
  const spec = loadSpec('tiny');
  const tokenizer = await Tokenizer.train(ALL_COMPOSITIONS.flatMap(shapeCaptions), {
    vocabSize: spec.transformer.vocabSize,
  });
  const blob = (specs: { name: string }[], arrays: Float32Array[]) =>
    encodeState(
      { test: true },
      specs.map((s, i) => [s.name, arrays[i]!] as const),
    );
  const bundle = encodeBundle({
    spec,
    tokenizer: tokenizer.toJSON(),
    dvae: blob(dvaeParamSpecs(spec.dvae), initDvaeParams(spec.dvae, 1)),
    transformer: blob(
      transformerParamSpecs(spec.transformer, spec.dvae),
      initTransformerParams(spec.transformer, spec.dvae, 2),
    ),
    meta: { test: 'eval-bundle' },
  });
  const { models } = await openStores({ dir });
  await models.publish('dalle', bundle, { test: 'eval-bundle' });
  return bundle;
}

test('eval: a published bundle is judged alike in process and over gRPC, and by the CLI', async (t) => {
  await initTfBackend();
  const dir = mkdtempSync(join(tmpdir(), 'dalle-eval-'));
  const quiet = () => undefined;
  const server = new SamplerService({ store: (await openStores({ dir })).models, log: quiet });
  try {
    const bundle = await publishTinyBundle(dir);
    const dvae = await bundleDvae(bundle);
    const model = await loadBundleModel(bundle, {
      name: 'dalle',
      version: 1,
      createdAt: new Date().toISOString(),
    });
    const n = 12;
    const local = await evaluateShapes({
      generate: keep(localImages, samplingModelGenerator(model, { batch: 5 })),
      dvae,
      n,
      seed: 5,
    });

    const port = await server.listen('127.0.0.1:0');
    await server.registry.waitForServing(1, 60_000);
    const remote = await grpcGenerator(`127.0.0.1:${port}`, { concurrency: 4 });
    let overGrpc;
    try {
      overGrpc = await evaluateShapes({ generate: keep(grpcImages, remote.generate), dvae, n, seed: 5 });
    } finally {
      remote.close();
    }
    model.dispose();
    dvae.dispose();
    // Same seeds, same model code: the same images, so the same verdict on every one of them.
    assert.equal(grpcImages.length, 2 * n);
    assert.ok(
      localImages.some((img) => !Buffer.from(img).equals(Buffer.from(localImages[0]!))),
      'the sampled images differ from one another',
    );
    grpcImages.forEach((img, i) =>
      assert.ok(
        Buffer.from(img).equals(Buffer.from(localImages[i]!)),
        `image ${i} differs between in-process and gRPC`,
      ),
    );
    assert.deepEqual(overGrpc.items, local.items);
    assert.equal(local.seen.images, n);
    assert.equal(local.heldOut.images, n);
    assert.ok(local.reconstructionMse > 0 && local.reconstructionMse < 1);
    t.diagnostic(
      `untrained tiny bundle: held-out all-four ${local.heldOut.accuracy.all}, random ${local.random.accuracy.all}, MSE ${local.reconstructionMse.toFixed(4)}`,
    );

    // The command a user runs, against the same folder store.
    const cli = spawnSync(
      process.execPath,
      ['bin/dalle.js', 'eval', '--store', dir, '--n', String(n), '--seed', '5', '--json'],
      {
        cwd: root,
        encoding: 'utf8',
        timeout: 120_000,
      },
    );
    assert.equal(cli.status, 0, cli.stderr);
    const out = JSON.parse(cli.stdout) as Record<string, any>;
    assert.deepEqual(out.model, { name: 'dalle', version: 1 });
    for (const g of ['seen', 'heldOut', 'random', 'reconstruction', 'seenReconstruction'])
      assert.deepEqual(out[g].accuracy, (local as any)[g].accuracy, g);
    assert.equal(out.reconstructionMse, local.reconstructionMse);
    assert.equal(out.items, undefined, 'items only with --details');

    // The code-usage bench finds the model the same way and counts every held-out composition's cells.
    const usage = spawnSync(
      process.execPath,
      ['bin/dalle.js', 'bench', 'code-usage', '--store', dir, '--json'],
      { cwd: root, encoding: 'utf8', timeout: 120_000 },
    );
    assert.equal(usage.status, 0, usage.stderr);
    const u = JSON.parse(usage.stdout.trim().split('\n').at(-1)!) as Record<string, any>;
    const spec = loadSpec('tiny');
    assert.equal(u.trainImages, spec.dataset.kind === 'shapes' ? spec.dataset.count : -1);
    assert.equal(u.heldOut.length, 12, 'six held-out pairs in two sizes');
    for (const r of u.heldOut) {
      assert.ok(r.cells > 0, r.composition);
      assert.ok(r.unseen + r.unseenWithColour + r.unseenWithShape <= 1 + 1e-9, r.composition);
    }

    const table = spawnSync(process.execPath, ['bin/dalle.js', 'eval', '--store', dir, '--n', '3'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /\| held-out compositions \(zero-shot\) \| 3 \|/);
    assert.match(table.stdout, /dVAE reconstruction MSE/);

    const bad = spawnSync(process.execPath, ['bin/dalle.js', 'eval', '--store', dir, '--n', 'zero'], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--n must be an integer ≥ 1, got 'zero'/);
    const missing = spawnSync(
      process.execPath,
      ['bin/dalle.js', 'eval', '--store', dir, '--model', 'nope', '--n', '1'],
      { cwd: root, encoding: 'utf8' },
    );
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /no published model named 'nope'/);
  } finally {
    await server.shutdown(5_000);
    rmSync(dir, { recursive: true, force: true });
  }
});
