// Generators for the evaluation: images for captions from a published model, sampled in this process by
// the sampler's own model code (services/sampler/tf-engine.ts) or over gRPC from a running sampler.
import { keepBest } from '../services/sampler/candidates.ts';
import type { SamplingModel } from '../services/sampler/engine.ts';
import { imageSeed } from '../services/sampler/request.ts';
import { EvalImageError, type GenerateFn } from './shapes-eval.ts';

/** Sampling parameters both generators pass on. */
export interface SamplingChoice {
  temperature?: number;
  topK?: number;
  topP?: number;
  /** Classifier-free guidance scale (1 = none). */
  guidanceScale?: number;
  /** Candidates per image, the best kept by the model's reranker (1 = none). */
  candidates?: number;
}

/** A GenerateFn over the sampler's own SamplingModel (services/sampler/engine.ts), in this process, exactly
 *  as the server samples a request: rows are batched about `batch` at a time into one KV-cache session
 *  (all candidates of an image in the same one), decoded, and the best candidate kept (candidates.ts). */
export function samplingModelGenerator(
  model: SamplingModel,
  opts: SamplingChoice & { batch?: number } = {},
): GenerateFn {
  const batch = opts.batch ?? 32;
  const N = opts.candidates ?? 1;
  return async (prompts, n, seed) => {
    const R = model.facts.resolution;
    const px = R * R * 3;
    const texts = prompts.map((p) => model.encodePrompt(p));
    const groups = prompts.flatMap((_, k) => Array.from({ length: n }, (_, i) => ({ k, i })));
    const out = prompts.map(() => new Uint8Array(n * px));
    const perChunk = Math.max(1, Math.floor(batch / N));
    for (let g0 = 0; g0 < groups.length; g0 += perChunk) {
      const chunk = groups.slice(g0, g0 + perChunk);
      // Prompt k is the request with seed (seed + k·n·N); its sample i·N + c has that seed + i·N + c.
      const rows = chunk.flatMap(({ k, i }) =>
        Array.from({ length: N }, (_, c) => ({
          text: texts[k]!,
          seed: imageSeed(requestSeed(seed, k, n, N), i * N + c),
          temperature: opts.temperature ?? 1,
          topK: opts.topK ?? 0,
          topP: opts.topP ?? 1,
          guidanceScale: opts.guidanceScale ?? 1,
        })),
      );
      const session = model.start(rows);
      try {
        const T = session.tokensPerRow;
        const samples = rows.map((_, index) => ({
          index,
          tokens: new Int32Array(T),
          score: 0,
          rgb: new Uint8Array(0),
        }));
        while (!session.done)
          for (const { row, result } of session.step()) Object.assign(samples[row]!, result);
        const tokens = new Int32Array(rows.length * T);
        samples.forEach((smp, r) => tokens.set(smp.tokens, r * T));
        const rgb = model.decode(tokens, rows.length);
        samples.forEach((smp, r) => (smp.rgb = rgb.slice(r * px, (r + 1) * px)));
        chunk.forEach(({ k, i }, j) => {
          const { kept } = keepBest(model, texts[k]!, samples.slice(j * N, (j + 1) * N), N);
          out[k]!.set(kept[0]!.image.rgb, i * px);
        });
      } finally {
        session.dispose();
      }
      // Let timers and I/O run between batches (progress lines, a gRPC server in the same process).
      await new Promise((res) => setImmediate(res));
    }
    return out;
  };
}

/** Seed of the request for prompt k of an evaluation: requests of n images × N candidates take disjoint
 *  seed ranges. */
export function requestSeed(seed: number, k: number, n: number, candidates: number): number {
  return (seed + k * n * candidates) % 2 ** 32;
}

/** A GenerateFn that calls `Generate` on a running sampler (`host:port`) through the sampler's client
 *  (services/sampler/client.ts), `concurrency` requests in flight so the server can batch them.
 *  Returns the generator and a `close` for its channel. */
export async function grpcGenerator(
  address: string,
  opts: SamplingChoice & { model?: string; version?: number; concurrency?: number; deadlineMs?: number } = {},
): Promise<{ generate: GenerateFn; close(): void }> {
  const { createSamplerClient, generate: call } = await import('../services/sampler/client.ts');
  const { decodeImage } = await import('../data/image.ts');
  const client = createSamplerClient(address);
  const one = async (prompt: string, n: number, seed: number): Promise<Uint8Array> => {
    const res = await call(
      client,
      {
        prompt,
        numImages: n,
        seed: BigInt(seed),
        temperature: opts.temperature,
        topK: opts.topK,
        topP: opts.topP,
        guidanceScale: opts.guidanceScale,
        candidates: opts.candidates,
        model: opts.model ? { name: opts.model, version: opts.version } : undefined,
      },
      { deadline: Date.now() + (opts.deadlineMs ?? 600_000), keepProgress: false },
    );
    if (res.images.length !== n)
      throw new EvalImageError(`Generate '${prompt}' images`, res.images.length, n);
    const images = [...res.images].sort((a, b) => a.index - b.index);
    const decoded = await Promise.all(
      images.map((im) => decodeImage(im.png, `Generate image ${im.index} of '${prompt}'`)),
    );
    const per = decoded[0]!.rgb.length;
    const out = new Uint8Array(n * per);
    decoded.forEach((d, i) => out.set(d.rgb, i * per));
    return out;
  };
  const generate: GenerateFn = async (prompts, n, seed) => {
    const out: Uint8Array[] = new Array(prompts.length);
    let next = 0;
    const lanes = Array.from({ length: Math.min(opts.concurrency ?? 8, prompts.length) }, async () => {
      for (let k = next++; k < prompts.length; k = next++)
        out[k] = await one(prompts[k]!, n, requestSeed(seed, k, n, opts.candidates ?? 1));
    });
    await Promise.all(lanes);
    return out;
  };
  return { generate, close: () => client.close() };
}
