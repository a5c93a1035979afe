// Generators for the evaluation: images for captions from a published model, sampled in this process by
// the sampler's own model code (services/sampler/tf-engine.ts) or over gRPC from a running sampler.
import type { SamplingModel } from '../services/sampler/engine.ts';
import { EvalImageError, type GenerateFn } from './shapes-eval.ts';

/** Sampling parameters both generators pass on. */
export interface SamplingChoice {
  temperature?: number;
  topK?: number;
  topP?: number;
}

/** A GenerateFn over the sampler's own SamplingModel (services/sampler/engine.ts), in this process: rows
 *  are batched `batch` at a time into one KV-cache session, as the server batches concurrent requests. */
export function samplingModelGenerator(
  model: SamplingModel,
  opts: SamplingChoice & { batch?: number } = {},
): GenerateFn {
  const batch = opts.batch ?? 32;
  return async (prompts, n, seed) => {
    const R = model.facts.resolution;
    const texts = prompts.map((p) => model.encodePrompt(p));
    const rows = prompts.flatMap((_, k) =>
      Array.from({ length: n }, (_, i) => ({ k, i, seed: (seed + k * n + i) % 2 ** 32 })),
    );
    const out = prompts.map(() => new Uint8Array(n * R * R * 3));
    for (let r0 = 0; r0 < rows.length; r0 += batch) {
      const chunk = rows.slice(r0, r0 + batch);
      const session = model.start(
        chunk.map((r) => ({
          text: texts[r.k]!,
          seed: r.seed,
          temperature: opts.temperature ?? 1,
          topK: opts.topK ?? 0,
          topP: opts.topP ?? 1,
        })),
      );
      try {
        const tokens = new Int32Array(chunk.length * session.tokensPerRow);
        while (!session.done)
          for (const { row, result } of session.step()) tokens.set(result.tokens, row * session.tokensPerRow);
        const rgb = model.decode(tokens, chunk.length);
        chunk.forEach((r, j) =>
          out[r.k]!.set(rgb.subarray(j * R * R * 3, (j + 1) * R * R * 3), r.i * R * R * 3),
        );
      } finally {
        session.dispose();
      }
      // Let timers and I/O run between batches (progress lines, a gRPC server in the same process).
      await new Promise((res) => setImmediate(res));
    }
    return out;
  };
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
        out[k] = await one(prompts[k]!, n, (seed + k * n) % 2 ** 32);
    });
    await Promise.all(lanes);
    return out;
  };
  return { generate, close: () => client.close() };
}
