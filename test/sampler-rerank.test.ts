// sampler: the paper's reranking (candidates) and classifier-free guidance over a real loopback server with
// a trained tiny bundle that has a reranker: the best candidate is kept and reproducible on its own, guided
// sampling changes the image, and the limits answer INVALID_ARGUMENT / RESOURCE_EXHAUSTED naming what is
// wrong.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import * as tf from '@tensorflow/tfjs';
import { generate, listModels } from '../services/sampler/client.ts';
import { publishTinyBundle } from './fixtures/tiny-bundle.ts';
import { startSampler, type SamplerHarness } from './fixtures/sampler-harness.ts';

let h: SamplerHarness;

before(async () => {
  h = await startSampler({ scheduler: { maxBatchRows: 32, maxRows: 64 }, maxCandidates: 8 });
  await publishTinyBundle(h.models, 'dalle');
  await publishTinyBundle(h.models, 'plain', { overrides: { rerank: { steps: 0 } } });
  await h.svc.registry.waitForServing(1);
});

after(async () => {
  await h?.close();
});

const hex = (png: Uint8Array) => Buffer.from(png).toString('hex');

test('sampler: candidates — each image is the best of N by the reranker, and reproducible alone by its seed', async () => {
  const tensors = tf.memory().numTensors;
  const prompt = 'a large red circle at the top';
  const r = await generate(h.client, { prompt, numImages: 2, candidates: 4, seed: 100n });
  assert.equal(r.images.length, 2, 'num_images come back, not the candidates');
  assert.deepEqual(r.progress.at(-1)!.tokensDone, [16, 16], 'progress per returned image');
  assert.ok(r.done.timings!.rerankMs > 0);
  // Every candidate alone: the kept one is the highest-scoring of its image's four, byte for byte.
  const singles = await Promise.all(
    Array.from({ length: 8 }, (_, k) => generate(h.client, { prompt, numImages: 1, seed: BigInt(100 + k) })),
  );
  for (const img of [...r.images].sort((a, b) => a.index - b.index)) {
    assert.ok(img.candidate >= 0 && img.candidate < 4);
    assert.equal(img.seed, BigInt(100 + img.index * 4 + img.candidate), 'seed = seed + i·N + c');
    const mine = singles.slice(img.index * 4, img.index * 4 + 4).map((s) => s.images[0]!);
    assert.equal(hex(img.png), hex(mine[img.candidate]!.png), 'the kept candidate, reproduced by its seed');
    const scores = mine.map((m) => m.rerankScore!);
    assert.ok(
      scores.every((s) => s >= -1 && s <= 1),
      `cosines: ${scores}`,
    );
    assert.ok(
      Math.abs(img.rerankScore! - Math.max(...scores)) < 1e-5,
      `kept ${img.rerankScore} of ${scores}`,
    );
  }
  assert.equal(tf.memory().numTensors, tensors, 'no tensor leaked');
  const models = await listModels(h.client);
  assert.deepEqual(
    models.models.filter((m) => m.servingVersion > 0).map((m) => [m.name, m.reranker]),
    [['dalle', true]],
  );
});

test('sampler: guidance samples from u + s·(c − u): scale 1 is plain sampling, another scale another image', async () => {
  const req = { prompt: 'a small blue square', numImages: 2, seed: 7n };
  const plain = await generate(h.client, req);
  const one = await generate(h.client, { ...req, guidanceScale: 1 });
  const guided = await generate(h.client, { ...req, guidanceScale: 3 });
  const again = await generate(h.client, { ...req, guidanceScale: 3 });
  const tokens = (r: typeof plain) =>
    [...r.images].sort((a, b) => a.index - b.index).map((i) => i.tokens.join());
  assert.deepEqual(tokens(one), tokens(plain));
  assert.notDeepEqual(tokens(guided), tokens(plain));
  assert.deepEqual(tokens(again), tokens(guided), 'guided sampling is as reproducible as plain');
  // Guided candidates: 2 images × 2 candidates × 2 rows = 8 rows of the forward pass.
  const both = await generate(h.client, { ...req, guidanceScale: 3, candidates: 2 });
  assert.equal(both.images.length, 2);
  assert.ok(h.outcomes.every((o) => o.code === status.OK));
});

test('sampler: limits — too many candidates or rows is INVALID_ARGUMENT, rows held past --max-rows RESOURCE_EXHAUSTED', async () => {
  const invalid = (re: RegExp) => (e: ServiceError) => {
    assert.equal(status[e.code], status[status.INVALID_ARGUMENT], e.details);
    assert.match(e.details, re);
    assert.equal(e.metadata.get('dalle-invalid-field')[0], 'candidates');
    return true;
  };
  await assert.rejects(
    generate(h.client, { prompt: 'a red circle', candidates: 9 }),
    invalid(/^candidates: must be at most this sampler's --max-candidates 8, got 9/),
  );
  await assert.rejects(
    generate(h.client, { prompt: 'a red circle', candidates: 0 }),
    invalid(/^candidates: must be an integer ≥ 1, got 0/),
  );
  await assert.rejects(
    generate(h.client, { prompt: 'a red circle', numImages: 5, candidates: 8 }),
    invalid(/num_images × candidates = 40 rows exceed this sampler's --max-batch-rows 32/),
  );
  await assert.rejects(
    generate(h.client, { prompt: 'a red circle', numImages: 3, candidates: 8, guidanceScale: 2 }),
    invalid(/num_images × candidates × 2 \(guidance\) = 48 rows/),
  );
  await assert.rejects(
    generate(h.client, { prompt: 'a red circle', candidates: 2, model: { name: 'plain' } }),
    invalid(/must be 1: plain v1 was trained without a reranker/),
  );
  await assert.rejects(
    generate(h.client, { prompt: 'a red circle', guidanceScale: 21 }),
    (e: ServiceError) =>
      e.code === status.INVALID_ARGUMENT && /^guidance_scale: must be in \[0, 20\]/.test(e.details),
  );
  // 3 requests of 32 rows at once against --max-rows 64: two are held, the third is refused.
  const results = await Promise.allSettled(
    [0, 1, 2].map((i) =>
      generate(h.client, { prompt: 'a red circle', numImages: 4, candidates: 8, seed: BigInt(i) }),
    ),
  );
  const refused = results.filter((r) => r.status === 'rejected');
  assert.equal(refused.length, 1, JSON.stringify(results.map((r) => r.status)));
  const err = (refused[0] as PromiseRejectedResult).reason as ServiceError;
  assert.equal(err.code, status.RESOURCE_EXHAUSTED);
  assert.match(
    err.details,
    /64 image rows generating or queued and this request needs 32 \(limit 64 rows, --max-rows\)/,
  );
  // Capacity comes back once they finish.
  const r = await generate(h.client, { prompt: 'a red circle', numImages: 4, candidates: 8 });
  assert.equal(r.images.length, 4);
});
