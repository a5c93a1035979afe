// Validation of a GenerateRequest: zod on the wire message, then the checks that need the model (top_k
// against the codebook). Errors name the proto field (`num_images`, not `numImages`): that is what a user
// of `buf curl` or any other language's stub sees.
import { randomInt } from 'node:crypto';
import { z } from 'zod';
import type { GenerateRequest } from '../../proto/gen/dalle/v1/sampler.ts';
import { rowCost, type ModelFacts, type RowSpec, type SamplingParams } from './engine.ts';
import { InvalidArgumentError } from './errors.ts';

export const MAX_IMAGES = 16;
export const MAX_PROMPT_CHARS = 4096;
export const MAX_TEMPERATURE = 10;
export const MAX_GUIDANCE_SCALE = 20;
const UINT32_MAX = 2 ** 32 - 1;

const modelName = /^[a-z0-9][a-z0-9_-]*$/;

/** A numeric field with one message for every way it can be wrong (not a number, NaN, out of range). */
function numberIn(rule: string, ok: (n: number) => boolean) {
  const error = (i: { input: unknown }) => `must be ${rule}, got ${String(i.input)}`;
  return z.number({ error }).refine(ok, { error });
}

/** The wire request, field by field (ts-proto gives optional scalars as `undefined` when unset). */
const RequestSchema = z.object({
  prompt: z
    .string()
    .refine((s) => s.trim().length > 0, { error: 'must not be empty' })
    .refine((s) => s.length <= MAX_PROMPT_CHARS, {
      error: (i) => `must be at most ${MAX_PROMPT_CHARS} characters, got ${(i.input as string).length}`,
    }),
  numImages: numberIn(
    `between 1 and ${MAX_IMAGES}`,
    (n) => Number.isInteger(n) && n >= 1 && n <= MAX_IMAGES,
  ).optional(),
  seed: z
    .bigint()
    .refine((s) => s >= 0n && s <= BigInt(UINT32_MAX), {
      error: (i) => `must be < 2^32, got ${String(i.input)}`,
    })
    .optional(),
  temperature: numberIn(
    `in (0, ${MAX_TEMPERATURE}]`,
    (t) => Number.isFinite(t) && t > 0 && t <= MAX_TEMPERATURE,
  ).optional(),
  topK: numberIn('a non-negative integer', (k) => Number.isInteger(k) && k >= 0).optional(),
  topP: numberIn('in (0, 1]', (p) => Number.isFinite(p) && p > 0 && p <= 1).optional(),
  guidanceScale: numberIn(
    `in [0, ${MAX_GUIDANCE_SCALE}]`,
    (g) => Number.isFinite(g) && g >= 0 && g <= MAX_GUIDANCE_SCALE,
  ).optional(),
  candidates: numberIn('an integer ≥ 1', (c) => Number.isInteger(c) && c >= 1).optional(),
  model: z
    .object({
      name: z.string().refine((n) => n === '' || modelName.test(n), {
        error: (i) => `'${String(i.input)}' must match ${modelName}`,
      }),
      version: numberIn('≥ 1 when set', (v) => Number.isInteger(v) && v >= 1).optional(),
    })
    .optional(),
});

const protoField: Record<string, string> = {
  numImages: 'num_images',
  topK: 'top_k',
  topP: 'top_p',
  guidanceScale: 'guidance_scale',
};

/** A request that passed the wire checks, with defaults filled in. */
export interface ValidRequest extends SamplingParams {
  prompt: string;
  numImages: number;
  /** Candidates sampled per image returned (the reranker keeps the best); 1 = no reranking. */
  candidates: number;
  /** Seed of image 0 (random when the client sent none); candidate c of image i uses
   *  (seed + i·candidates + c) mod 2^32. */
  seed: number;
  /** Empty: the server's default model. */
  modelName: string;
  modelVersion: number | undefined;
}

/** Wire checks and defaults; throws InvalidArgumentError naming the first bad field (all are listed). */
export function validateRequest(req: GenerateRequest): ValidRequest {
  const r = RequestSchema.safeParse(req);
  if (!r.success) {
    const issues = r.error.issues.map((i) => {
      const field = i.path.map((p) => protoField[String(p)] ?? String(p)).join('.') || '(request)';
      return { field, message: i.message };
    });
    const first = issues[0]!;
    const rest = issues
      .slice(1)
      .map((i) => `; ${i.field}: ${i.message}`)
      .join('');
    throw new InvalidArgumentError(first.field, `${first.message}${rest}`);
  }
  const v = r.data;
  return {
    prompt: v.prompt,
    numImages: v.numImages ?? 1,
    seed: v.seed === undefined ? randomInt(0, UINT32_MAX) : Number(v.seed),
    temperature: v.temperature ?? 1,
    topK: v.topK ?? 0,
    topP: v.topP ?? 1,
    guidanceScale: v.guidanceScale ?? 1,
    candidates: v.candidates ?? 1,
    modelName: v.model?.name ?? '',
    modelVersion: v.model?.version,
  };
}

/** What one server lets a request ask for (its command-line limits). */
export interface RequestLimits {
  /** GenerateRequest.candidates at most this. */
  maxCandidates: number;
  /** Rows of one forward pass (the scheduler's maxBatchRows): a request's rows must fit in one. */
  maxBatchRows: number;
}

/** Rows a request takes in the batched forward pass: every candidate of every image, twice with guidance. */
export function requestRows(req: Pick<ValidRequest, 'numImages' | 'candidates' | 'guidanceScale'>): number {
  return req.numImages * req.candidates * rowCost(req);
}

/** Checks that depend on the model the request resolved to and on this server's limits. */
export function checkAgainstModel(req: ValidRequest, model: ModelFacts, limits: RequestLimits): void {
  if (req.topK > model.codebookSize) {
    throw new InvalidArgumentError(
      'top_k',
      `must be at most the codebook size ${model.codebookSize} of ${model.name} v${model.version}, got ${req.topK}`,
    );
  }
  if (req.candidates > limits.maxCandidates) {
    throw new InvalidArgumentError(
      'candidates',
      `must be at most this sampler's --max-candidates ${limits.maxCandidates}, got ${req.candidates}`,
    );
  }
  if (req.candidates > 1 && !model.reranker) {
    throw new InvalidArgumentError(
      'candidates',
      `must be 1: ${model.name} v${model.version} was trained without a reranker (rerank.steps = 0), got ${req.candidates}`,
    );
  }
  const rows = requestRows(req);
  if (rows > limits.maxBatchRows) {
    const guided = req.guidanceScale === 1 ? '' : ' × 2 (guidance)';
    throw new InvalidArgumentError(
      'candidates',
      `num_images × candidates${guided} = ${rows} rows exceed this sampler's --max-batch-rows ${limits.maxBatchRows}; ask for fewer images or candidates`,
    );
  }
}

/** The rows of a request, in sample order: candidate c of image i is sample k = i·candidates + c, with
 *  seed (seed + k) mod 2^32. */
export function requestRowSpecs(req: ValidRequest, text: Int32Array): RowSpec[] {
  return Array.from({ length: req.numImages * req.candidates }, (_, k) => ({
    text,
    seed: imageSeed(req.seed, k),
    temperature: req.temperature,
    topK: req.topK,
    topP: req.topP,
    guidanceScale: req.guidanceScale,
  }));
}

/** Seed of sample k (image i, candidate c: k = i·candidates + c): consecutive, wrapping at 2^32, so one
 *  image is reproducible on its own. */
export function imageSeed(seed: number, index: number): number {
  return (seed + index) % 2 ** 32;
}
