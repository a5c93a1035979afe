// A small client over the generated stub, shared by `dalle generate`, `dalle bench generate` and tests:
// channel options that match the server's, and one call that collects a Generate stream.
import * as grpc from '@grpc/grpc-js';
import {
  SamplerClient,
  type Done,
  type GenerateRequest,
  type Image,
  type Progress,
} from '../../proto/gen/dalle/v1/sampler.ts';
import { samplerClientCredentials } from '../../security/grpc.ts';
import { samplerClientSecurity, type SamplerClientSecurity } from '../../security/settings.ts';
import { grpcClientTracing } from '../../telemetry/grpc.ts';
import { DEFAULT_ADDRESS } from './server.ts';

export const clientChannelOptions: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': 32 * 1024 * 1024,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
};

/** A client for the sampler at `address`; TLS, client certificate and token from DALLE_SAMPLER_* (or
 *  `security`). */
export function createSamplerClient(
  address: string = process.env.DALLE_SAMPLER_ADDRESS || DEFAULT_ADDRESS,
  security: SamplerClientSecurity = samplerClientSecurity(),
): SamplerClient {
  const { credentials, options, interceptors } = samplerClientCredentials(security);
  // A CLIENT span per call with traceparent in the metadata (a no-op until the process inits telemetry).
  return new SamplerClient(address, credentials, {
    ...clientChannelOptions,
    ...options,
    interceptors: [grpcClientTracing(), ...interceptors],
  });
}

export interface GenerateResult {
  images: Image[];
  done: Done;
  /** Progress events received, in order. */
  progress: Progress[];
  /** Milliseconds from the call to the first image event. */
  firstImageMs: number | undefined;
}

export interface GenerateCallOptions {
  /** Absolute deadline (ms since epoch) or a Date. */
  deadline?: number | Date;
  onProgress?: (p: Progress) => void;
  onImage?: (img: Image) => void;
  /** Lets the caller cancel the call (e.g. Ctrl-C, or a test that cancels mid-stream). */
  onCall?: (call: grpc.ClientReadableStream<unknown>) => void;
  /** Keep every progress event in the result (default true). */
  keepProgress?: boolean;
}

/** Runs one Generate call to completion; rejects with the call's ServiceError (code, details). */
export function generate(
  client: SamplerClient,
  request: Partial<GenerateRequest>,
  opts: GenerateCallOptions = {},
): Promise<GenerateResult> {
  const t0 = performance.now();
  const req: GenerateRequest = { prompt: '', model: undefined, ...request };
  return new Promise((resolve, reject) => {
    const call = client.generate(req, opts.deadline === undefined ? {} : { deadline: opts.deadline });
    opts.onCall?.(call);
    const images: Image[] = [];
    const progress: Progress[] = [];
    let done: Done | undefined;
    let firstImageMs: number | undefined;
    call.on('data', (ev: { event?: { $case: string; value: unknown } }) => {
      const e = ev.event;
      if (e?.$case === 'progress') {
        if (opts.keepProgress !== false) progress.push(e.value as Progress);
        opts.onProgress?.(e.value as Progress);
      } else if (e?.$case === 'image') {
        firstImageMs ??= performance.now() - t0;
        images.push(e.value as Image);
        opts.onImage?.(e.value as Image);
      } else if (e?.$case === 'done') done = e.value as Done;
    });
    call.on('error', reject);
    call.on('end', () => {
      if (!done) reject(new Error('Generate stream ended without a Done event'));
      else resolve({ images, done, progress, firstImageMs });
    });
  });
}

/** Unary ListModels as a promise. */
export function listModels(
  client: SamplerClient,
): Promise<import('../../proto/gen/dalle/v1/sampler.ts').ListModelsResponse> {
  return new Promise((resolve, reject) =>
    client.listModels({}, (err, res) => (err ? reject(err) : resolve(res))),
  );
}
