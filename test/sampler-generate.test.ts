// sampler: Generate over a real loopback server with a trained tiny bundle: PNGs, determinism, validation,
// health, ListModels and reflection (npx buf curl).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { status, type ServiceError } from '@grpc/grpc-js';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { generate, listModels } from '../services/sampler/client.ts';
import { healthProtoDir } from '../services/sampler/server.ts';
import { publishTinyBundle } from './fixtures/tiny-bundle.ts';
import { startSampler, waitFor, type SamplerHarness } from './fixtures/sampler-harness.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
let h: SamplerHarness;

before(async () => {
  h = await startSampler();
  assert.equal(await h.healthCheck(), 'NOT_SERVING', 'no model published yet');
  await publishTinyBundle(h.models, 'dalle');
  await h.svc.registry.waitForServing(1);
});

after(async () => {
  await h?.close();
});

test('sampler: health flips to SERVING once the published model has loaded', async () => {
  // A server watching a name nobody published yet: NOT_SERVING, and Generate is UNAVAILABLE, until a load.
  const late = await startSampler({ defaultModel: 'late' });
  try {
    assert.equal(await late.healthCheck(), 'NOT_SERVING');
    assert.equal(await late.healthCheck('dalle.v1.Sampler'), 'NOT_SERVING');
    await assert.rejects(
      generate(late.client, { prompt: 'a red circle' }),
      (e: ServiceError) => e.code === status.UNAVAILABLE && /not loaded yet/.test(e.details),
    );
    await publishTinyBundle(late.models, 'late');
    await waitFor(async () => (await late.healthCheck()) === 'SERVING', 'health SERVING');
    assert.equal(await late.healthCheck('dalle.v1.Sampler'), 'SERVING');
    const r = await generate(late.client, { prompt: 'a red circle' });
    assert.equal(r.done.model?.name, 'late');
  } finally {
    await late.close();
  }
});

test('sampler: a trained tiny model returns valid PNGs of the configured size', async () => {
  const tensors = tf.memory().numTensors;
  const r = await generate(h.client, { prompt: 'a large red circle at the top', numImages: 3, seed: 11n });
  assert.equal(r.images.length, 3);
  assert.deepEqual(r.images.map((i) => i.index).sort(), [0, 1, 2]);
  for (const img of r.images) {
    const meta = await sharp(img.png).metadata();
    assert.equal(meta.format, 'png');
    assert.deepEqual(
      [meta.width, meta.height, meta.channels],
      [16, 16, 3],
      'tiny preset: dvae.resolution 16, RGB',
    );
    assert.deepEqual([img.width, img.height], [16, 16]);
    assert.equal(img.tokens.length, 16, 'grid 4 × 4');
    assert.ok(
      img.tokens.every((t) => Number.isInteger(t) && t >= 0 && t < 32),
      'tokens inside the codebook',
    );
    assert.equal(img.seed, 11n + BigInt(img.index));
    assert.ok(
      Number.isFinite(img.score) && img.score < 0,
      `score is a mean log-likelihood, got ${img.score}`,
    );
  }
  // Progress: per image, ending at 16/16, before any image.
  const last = r.progress.at(-1)!;
  assert.deepEqual(last.tokensDone, [16, 16, 16]);
  assert.equal(last.tokensTotal, 16);
  assert.equal(r.done.model?.name, 'dalle');
  assert.equal(r.done.model?.version, 1);
  assert.ok(r.done.timings!.totalMs >= r.done.timings!.sampleMs);
  assert.equal(tf.memory().numTensors, tensors, 'no tensor leaked by a request');
});

test('sampler: the same seed gives byte-identical PNGs; image i alone with its own seed reproduces it', async () => {
  const a = await generate(h.client, {
    prompt: 'a small blue square',
    numImages: 4,
    seed: 1234n,
    temperature: 0.9,
    topK: 20,
    topP: 0.95,
  });
  // Run the repeat beside another request, so it shares forward passes with different rows.
  const [b] = await Promise.all([
    generate(h.client, {
      prompt: 'a small blue square',
      numImages: 4,
      seed: 1234n,
      temperature: 0.9,
      topK: 20,
      topP: 0.95,
    }),
    generate(h.client, { prompt: 'a green triangle', numImages: 5, seed: 99n }),
  ]);
  const png = (r: typeof a) =>
    [...r.images].sort((x, y) => x.index - y.index).map((i) => Buffer.from(i.png).toString('hex'));
  assert.deepEqual(png(b), png(a), 'same request, same bytes');
  const one = await generate(h.client, {
    prompt: 'a small blue square',
    numImages: 1,
    seed: 1236n,
    temperature: 0.9,
    topK: 20,
    topP: 0.95,
  });
  assert.equal(
    Buffer.from(one.images[0]!.png).toString('hex'),
    png(a)[2],
    'image 2 of seed 1234 is image 0 of seed 1236',
  );
  const other = await generate(h.client, {
    prompt: 'a small blue square',
    numImages: 4,
    seed: 5n,
    temperature: 0.9,
    topK: 20,
    topP: 0.95,
  });
  assert.notDeepEqual(
    other.images.map((i) => i.tokens),
    a.images.map((i) => i.tokens),
    'another seed samples other tokens',
  );
});

test('sampler: each invalid field → INVALID_ARGUMENT naming it', async () => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ['prompt', { prompt: '   ' }, /^prompt: must not be empty/],
    ['prompt', { prompt: 'x'.repeat(5000) }, /^prompt: must be at most 4096 characters/],
    ['num_images', { numImages: 0 }, /^num_images: must be between 1 and 16, got 0/],
    ['num_images', { numImages: 17 }, /^num_images: must be between 1 and 16, got 17/],
    ['seed', { seed: 2n ** 32n }, /^seed: must be < 2\^32/],
    ['temperature', { temperature: 0 }, /^temperature: must be in \(0, 10\]/],
    ['temperature', { temperature: Number.NaN }, /^temperature: must be in \(0, 10\]/],
    ['temperature', { temperature: 11 }, /^temperature: must be in \(0, 10\]/],
    ['top_p', { topP: 0 }, /^top_p: must be in \(0, 1\]/],
    ['top_p', { topP: 1.5 }, /^top_p: must be in \(0, 1\]/],
    ['top_k', { topK: 33 }, /^top_k: must be at most the codebook size 32/],
    ['model.name', { model: { name: 'Bad Name' } }, /^model\.name: 'Bad Name' must match/],
    ['model.version', { model: { name: '', version: 0 } }, /^model\.version: must be ≥ 1/],
  ];
  for (const [field, fields, message] of cases) {
    await assert.rejects(
      generate(h.client, { prompt: 'a red circle', ...fields }),
      (e: ServiceError) => {
        assert.equal(e.code, status.INVALID_ARGUMENT, `${field}: ${e.details}`);
        assert.match(e.details, message);
        assert.equal(e.metadata.get('dalle-invalid-field')[0], field);
        return true;
      },
      field,
    );
  }
  // Two bad fields: both named.
  await assert.rejects(generate(h.client, { prompt: '', numImages: 99 }), (e: ServiceError) =>
    /prompt: .*; num_images: /.test(e.details),
  );
  // An unknown model or version is NOT_FOUND, not a validation error.
  await assert.rejects(
    generate(h.client, { prompt: 'a red circle', model: { name: 'nope' } }),
    (e: ServiceError) => e.code === status.NOT_FOUND,
  );
  await assert.rejects(
    generate(h.client, { prompt: 'a red circle', model: { name: 'dalle', version: 9 } }),
    (e: ServiceError) => e.code === status.NOT_FOUND,
  );
  assert.ok(
    h.outcomes.some((o) => o.code === status.INVALID_ARGUMENT),
    'the request seam saw the failures',
  );
});

test('sampler: ListModels reports the store and what is loaded', async () => {
  const r = await listModels(h.client);
  assert.equal(r.defaultModel, 'dalle');
  const m = r.models.find((x) => x.name === 'dalle');
  assert.ok(m, JSON.stringify(r));
  assert.deepEqual(
    {
      latest: m.latestVersion,
      serving: m.servingVersion,
      loaded: m.loadedVersions,
      res: m.resolution,
      grid: m.grid,
      preset: m.preset,
    },
    {
      latest: 1,
      serving: 1,
      loaded: [1],
      res: 16,
      grid: 4,
      preset: 'tiny',
    },
  );
});

function bufCurl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) =>
    execFile(
      'npx',
      ['buf', 'curl', '--protocol', 'grpc', '--http2-prior-knowledge', ...args],
      { cwd: root, timeout: 60_000 },
      (e, stdout, stderr) => resolve({ code: e ? Number(e.code ?? 1) : 0, stdout, stderr }),
    ),
  );
}

test('sampler: npx buf curl works against server reflection', async () => {
  const url = `http://${h.address}`;
  const services = await bufCurl(['--list-services', url]);
  assert.equal(services.code, 0, services.stderr);
  assert.match(services.stdout, /^dalle\.v1\.Sampler$/m);
  const gen = await bufCurl([
    '--data',
    '{"prompt":"a red circle","num_images":2,"seed":"3"}',
    `${url}/dalle.v1.Sampler/Generate`,
  ]);
  assert.equal(gen.code, 0, gen.stderr);
  // buf curl prints each message as a JSON object.
  const events = gen.stdout.split(/\n(?=\{)/).map((s) => JSON.parse(s) as Record<string, any>);
  const images = events.filter((e) => e.image).map((e) => e.image);
  assert.equal(images.length, 2);
  assert.deepEqual(
    images.map((i) => i.seed),
    ['3', '4'],
  );
  assert.equal(Buffer.from(images[0].png, 'base64').subarray(1, 4).toString(), 'PNG');
  assert.equal(events.at(-1)!.done.model.name, 'dalle');
  const bad = await bufCurl([
    '--data',
    '{"prompt":"a red circle","num_images":17}',
    `${url}/dalle.v1.Sampler/Generate`,
  ]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stdout + bad.stderr, /invalid_argument[\s\S]*num_images: must be between 1 and 16/);
  const health = await bufCurl([
    '--schema',
    healthProtoDir,
    '--data',
    '{"service":"dalle.v1.Sampler"}',
    `${url}/grpc.health.v1.Health/Check`,
  ]);
  assert.equal(health.code, 0, health.stderr);
  assert.equal(JSON.parse(health.stdout).status, 'SERVING');
});
