// sampler request validation: defaults, every range, proto field names, seeds.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { GenerateRequest } from '../../proto/gen/dalle/v1/sampler.ts';
import { InvalidArgumentError } from './errors.ts';
import { checkAgainstModel, imageSeed, requestRows, requestRowSpecs, validateRequest } from './request.ts';

const req = (r: Partial<GenerateRequest>): GenerateRequest => ({
  prompt: 'a red circle',
  model: undefined,
  ...r,
});

test('request: defaults fill every unset field; a random seed is a uint32', () => {
  const v = validateRequest(req({}));
  assert.deepEqual(
    { ...v, seed: 0 },
    {
      prompt: 'a red circle',
      numImages: 1,
      seed: 0,
      temperature: 1,
      topK: 0,
      topP: 1,
      guidanceScale: 1,
      candidates: 1,
      modelName: '',
      modelVersion: undefined,
    },
  );
  assert.ok(Number.isInteger(v.seed) && v.seed >= 0 && v.seed < 2 ** 32);
  const w = validateRequest(
    req({
      numImages: 16,
      seed: 2n ** 32n - 1n,
      temperature: 10,
      topK: 5,
      topP: 1,
      model: { name: 'cub-2', version: 3 },
    }),
  );
  assert.deepEqual(
    [w.numImages, w.seed, w.temperature, w.topK, w.topP, w.modelName, w.modelVersion],
    [16, 2 ** 32 - 1, 10, 5, 1, 'cub-2', 3],
  );
});

test('request: a bad field throws InvalidArgumentError with the proto field name', () => {
  const bad: [Partial<GenerateRequest>, string][] = [
    [{ prompt: '' }, 'prompt'],
    [{ numImages: 1.5 }, 'num_images'],
    [{ numImages: -1 }, 'num_images'],
    [{ seed: -1n }, 'seed'],
    [{ temperature: Infinity }, 'temperature'],
    [{ topK: -2 }, 'top_k'],
    [{ topP: -0.1 }, 'top_p'],
    [{ guidanceScale: -1 }, 'guidance_scale'],
    [{ guidanceScale: 20.5 }, 'guidance_scale'],
    [{ guidanceScale: NaN }, 'guidance_scale'],
    [{ candidates: 0 }, 'candidates'],
    [{ candidates: 2.5 }, 'candidates'],
    [{ model: { name: 'UPPER' } }, 'model.name'],
    [{ model: { name: 'x', version: 2.5 } }, 'model.version'],
  ];
  for (const [r, field] of bad) {
    assert.throws(
      () => validateRequest(req(r)),
      (e: unknown) =>
        e instanceof InvalidArgumentError && e.field === field && e.message.startsWith(`${field}: `),
      field,
    );
  }
});

test('request: top_k, candidates and rows are checked against the model and the server limits', () => {
  const facts = {
    name: 'm',
    version: 2,
    resolution: 16,
    grid: 4,
    codebookSize: 32,
    textLen: 12,
    preset: 'tiny',
    createdAt: '',
    reranker: true,
  };
  const limits = { maxCandidates: 64, maxBatchRows: 256 };
  checkAgainstModel(validateRequest(req({ topK: 32 })), facts, limits);
  assert.throws(
    () => checkAgainstModel(validateRequest(req({ topK: 33 })), facts, limits),
    /top_k: must be at most the codebook size 32 of m v2, got 33/,
  );
  const ok = validateRequest(req({ numImages: 4, candidates: 64 }));
  checkAgainstModel(ok, facts, limits);
  assert.equal(requestRows(ok), 256);
  const check =
    (r: Partial<GenerateRequest>, f = facts) =>
    () =>
      checkAgainstModel(validateRequest(req(r)), f, limits);
  assert.throws(
    check({ candidates: 65 }),
    /candidates: must be at most this sampler's --max-candidates 64, got 65/,
  );
  assert.throws(
    check({ numImages: 4, candidates: 64, guidanceScale: 3 }),
    (e: unknown) =>
      e instanceof InvalidArgumentError &&
      e.field === 'candidates' &&
      /num_images × candidates × 2 \(guidance\) = 512 rows exceed this sampler's --max-batch-rows 256/.test(
        e.message,
      ),
  );
  assert.throws(
    check({ candidates: 2 }, { ...facts, reranker: false }),
    /candidates: must be 1: m v2 was trained without a reranker/,
  );
  checkAgainstModel(validateRequest(req({ candidates: 1 })), { ...facts, reranker: false }, limits);
  // Sample k = i·candidates + c has seed (seed + k): candidates of one image are consecutive.
  const rows = requestRowSpecs(
    validateRequest(req({ numImages: 2, candidates: 3, seed: 10n, guidanceScale: 2 })),
    Int32Array.of(1),
  );
  assert.deepEqual(
    rows.map((r) => r.seed),
    [10, 11, 12, 13, 14, 15],
  );
  assert.ok(rows.every((r) => r.guidanceScale === 2));
});

test('request: image seeds are consecutive and wrap at 2^32', () => {
  assert.equal(imageSeed(7, 3), 10);
  assert.equal(imageSeed(2 ** 32 - 1, 1), 0);
});
