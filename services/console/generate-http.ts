// `Generate` over HTTP for the playground and for curl: POST /api/generate with a JSON body whose fields are
// the .proto's (`prompt`, `num_images`, `seed`, `temperature`, `top_k`, `top_p`, `guidance_scale`, `candidates`,
// `model: {name, version}`).
// The body's shape is checked here, then the request goes through the sampler's own `validateRequest`
// (the same zod schema and messages as the gRPC service) before it is forwarded over gRPC.
//
// `Accept: text/event-stream` streams server-sent events as the sampler streams them: `progress`,
// `image` (one per image, PNG in base64), `done`, or `error`. Any other Accept gets one JSON object once
// every image is there. A failure before the first event is an HTTP status (400 bad field, 404 no such
// model, 429 queue full, 503 no model or no sampler, 504 deadline); one after it is an `error` event.
import type { ServiceError } from '@grpc/grpc-js';
import { status as grpcStatus, type ClientReadableStream } from '@grpc/grpc-js';
import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import { z } from 'zod';
import type { GenerateEvent, GenerateRequest, SamplerClient } from '../../proto/gen/dalle/v1/sampler.ts';
import { InvalidArgumentError, validateRequest, type ValidRequest } from '../sampler/index.ts';
import { HttpError } from './http-error.ts';

/** A Generate call the console forwards gets this long at most. */
export const GENERATE_DEADLINE_MS = 10 * 60_000;

/** The request body: the proto's field names; value ranges are the sampler's to judge. */
export const GenerateBody = z.strictObject({
  prompt: z.string(),
  num_images: z.number().optional(),
  seed: z
    .union([z.number().int().nonnegative(), z.string().regex(/^\d+$/, 'must be a decimal integer')])
    .optional(),
  temperature: z.number().optional(),
  top_k: z.number().optional(),
  top_p: z.number().optional(),
  guidance_scale: z.number().optional(),
  candidates: z.number().optional(),
  model: z.strictObject({ name: z.string().default(''), version: z.number().optional() }).optional(),
});
export type GenerateBody = z.infer<typeof GenerateBody>;

/** The body's fields as a validated request (defaults filled, a random seed chosen when none was sent). */
export function validateBody(raw: unknown): ValidRequest {
  const body = GenerateBody.safeParse(raw);
  if (!body.success) {
    const i = body.error.issues[0]!;
    const field = i.path.join('.') || (i.code === 'unrecognized_keys' ? i.keys.join(', ') : '(body)');
    const message =
      i.code === 'unrecognized_keys'
        ? `unknown field${i.keys.length > 1 ? 's' : ''} (fields are the .proto's: prompt, num_images, seed, temperature, top_k, top_p, guidance_scale, candidates, model)`
        : i.message;
    throw new HttpError(400, 'invalid_argument', `${field}: ${message}`, field);
  }
  const b = body.data;
  const req: GenerateRequest = {
    prompt: b.prompt,
    numImages: b.num_images,
    seed: b.seed === undefined ? undefined : BigInt(b.seed),
    temperature: b.temperature,
    topK: b.top_k,
    topP: b.top_p,
    guidanceScale: b.guidance_scale,
    candidates: b.candidates,
    model: b.model ? { name: b.model.name, version: b.model.version } : undefined,
  };
  try {
    return validateRequest(req);
  } catch (e) {
    if (e instanceof InvalidArgumentError) throw new HttpError(400, 'invalid_argument', e.message, e.field);
    throw e;
  }
}

const httpStatusOf: Partial<Record<number, HttpError['status']>> = {
  [grpcStatus.INVALID_ARGUMENT]: 400,
  [grpcStatus.NOT_FOUND]: 404,
  [grpcStatus.RESOURCE_EXHAUSTED]: 429,
  [grpcStatus.UNAVAILABLE]: 503,
  [grpcStatus.DEADLINE_EXCEEDED]: 504,
};

/** A gRPC failure as the HTTP error it stands for. */
export function fromGrpc(e: ServiceError, samplerAddress: string): HttpError {
  const code = grpcStatus[e.code] ?? 'UNKNOWN';
  const field = e.metadata?.get('dalle-invalid-field')[0];
  const message =
    e.code === grpcStatus.UNAVAILABLE && /ECONNREFUSED|No connection established/.test(e.details)
      ? `the sampler at ${samplerAddress} is unreachable (start it with 'dalle sampler')`
      : e.details || e.message;
  return new HttpError(
    httpStatusOf[e.code] ?? 502,
    code.toLowerCase(),
    message,
    field ? String(field) : undefined,
  );
}

/** A GenerateEvent as the JSON the HTTP API sends (proto field names; uint64 as a decimal string). */
export function eventJson(ev: GenerateEvent): { event: string; data: Record<string, unknown> } | undefined {
  const e = ev.event;
  if (e?.$case === 'progress')
    return {
      event: 'progress',
      data: {
        tokens_done: e.value.tokensDone,
        tokens_total: e.value.tokensTotal,
        queue_position: e.value.queuePosition,
      },
    };
  if (e?.$case === 'image') {
    const i = e.value;
    return {
      event: 'image',
      data: {
        index: i.index,
        seed: String(i.seed),
        width: i.width,
        height: i.height,
        score: i.score,
        tokens: i.tokens,
        png_base64: Buffer.from(i.png).toString('base64'),
      },
    };
  }
  if (e?.$case === 'done') {
    const t = e.value.timings;
    return {
      event: 'done',
      data: {
        model: e.value.model ?? null,
        timings: t && {
          queue_ms: t.queueMs,
          sample_ms: t.sampleMs,
          decode_ms: t.decodeMs,
          total_ms: t.totalMs,
          shared_steps: t.sharedSteps,
        },
      },
    };
  }
  return undefined;
}

function forward(client: SamplerClient, v: ValidRequest): ClientReadableStream<GenerateEvent> {
  const req: GenerateRequest = {
    prompt: v.prompt,
    numImages: v.numImages,
    seed: BigInt(v.seed),
    temperature: v.temperature,
    topK: v.topK,
    topP: v.topP,
    guidanceScale: v.guidanceScale,
    candidates: v.candidates,
    model: { name: v.modelName, version: v.modelVersion },
  };
  return client.generate(req, { deadline: Date.now() + GENERATE_DEADLINE_MS });
}

/** Handles POST /api/generate: validate, forward, stream (SSE) or collect (JSON). */
export async function handleGenerate(
  c: Context,
  client: SamplerClient,
  samplerAddress: string,
): Promise<Response> {
  const raw: unknown = await c.req.json().catch(() => {
    throw new HttpError(400, 'invalid_argument', '(body): must be a JSON object');
  });
  const valid = validateBody(raw);
  const call = forward(client, valid);
  const events = call[Symbol.asyncIterator]() as AsyncIterator<GenerateEvent>;
  const next = () =>
    events.next().catch((e: ServiceError) => {
      throw fromGrpc(e, samplerAddress);
    });
  // The first event decides the HTTP status: an error before it is a status, not a stream.
  let first: IteratorResult<GenerateEvent>;
  try {
    first = await next();
  } catch (e) {
    call.cancel();
    throw e;
  }
  if (!(c.req.header('accept') ?? '').includes('text/event-stream')) {
    const images: unknown[] = [];
    let done: unknown = null;
    for (let r = first; !r.done; r = await next()) {
      const j = eventJson(r.value);
      if (j?.event === 'image') images.push(j.data);
      if (j?.event === 'done') done = j.data;
    }
    return c.json({ seed: String(valid.seed), images, done });
  }
  return streamSSE(c, async (stream) => {
    stream.onAbort(() => call.cancel());
    // What was asked for, with the seed the request resolved to (random when none was sent).
    const asked = {
      prompt: valid.prompt,
      num_images: valid.numImages,
      seed: String(valid.seed),
      temperature: valid.temperature,
      top_k: valid.topK,
      top_p: valid.topP,
      guidance_scale: valid.guidanceScale,
      candidates: valid.candidates,
    };
    await stream.writeSSE({ event: 'request', data: JSON.stringify(asked) });
    try {
      for (let r = first; !r.done && !stream.aborted; r = await next()) {
        const j = eventJson(r.value);
        if (j) await stream.writeSSE({ event: j.event, data: JSON.stringify(j.data) });
      }
    } catch (e) {
      const h = e instanceof HttpError ? e : new HttpError(502, 'internal', String(e));
      await stream.writeSSE({
        event: 'error',
        data: JSON.stringify({ error: h.code, status: h.status, message: h.message, field: h.field }),
      });
    }
  });
}
