// sampler: the real service behind telemetry's gRPC interceptor: the Generate server span carries the
// model, version and token counts the handler learns, the candidates, guidance and rows, and its status code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status, type ServiceError } from '@grpc/grpc-js';
import { generate } from '../services/sampler/client.ts';
import { GENERATE_ATTR, grpcServerTracing, initTelemetry, shutdownTelemetry } from '../telemetry/index.ts';
import { OtlpReceiver } from './fixtures/otlp-receiver.ts';
import { startSampler } from './fixtures/sampler-harness.ts';
import { publishTinyBundle } from './fixtures/tiny-bundle.ts';

test('sampler: Generate server spans carry model, version, token counts, candidates, rows and the status code', async () => {
  const rx = await OtlpReceiver.start();
  initTelemetry({ serviceName: 'dalle-sampler', env: rx.env('http/json') });
  const h = await startSampler({ interceptors: [grpcServerTracing()] });
  try {
    await publishTinyBundle(h.models, 'dalle');
    await h.svc.registry.waitForServing(1);
    await generate(h.client, {
      prompt: 'a large red circle',
      numImages: 2,
      seed: 1n,
      candidates: 3,
      guidanceScale: 2,
    });
    await assert.rejects(
      generate(h.client, { prompt: 'a red circle', numImages: 40, candidates: 4 }),
      (e: ServiceError) => e.code === status.INVALID_ARGUMENT,
    );
  } finally {
    await h.close();
    await shutdownTelemetry();
  }
  try {
    const spans = await rx.waitFor('two Generate server spans', () => {
      const s = rx.spans.filter(
        // kind 2 = SERVER: the harness's client (createSamplerClient) makes CLIENT spans of the same name here.
        (x) => x.name === 'dalle.v1.Sampler/Generate' && x.service === 'dalle-sampler' && x.kind === 2,
      );
      return s.length === 2 ? s : undefined;
    });
    const ok = spans.find((s) => s.attributes['rpc.grpc.status_code'] === 0)!;
    assert.ok(ok, JSON.stringify(spans.map((s) => s.attributes)));
    assert.equal(ok.attributes[GENERATE_ATTR.modelName], 'dalle');
    assert.equal(ok.attributes[GENERATE_ATTR.modelVersion], 1);
    assert.equal(ok.attributes[GENERATE_ATTR.numImages], 2);
    assert.equal(ok.attributes[GENERATE_ATTR.imageTokens], 16);
    assert.ok(Number(ok.attributes[GENERATE_ATTR.textTokens]) > 0);
    assert.equal(ok.attributes[GENERATE_ATTR.candidates], 3);
    assert.equal(ok.attributes[GENERATE_ATTR.guidanceScale], 2);
    assert.equal(ok.attributes[GENERATE_ATTR.rows], 12, '2 images × 3 candidates × 2 (guidance)');
    assert.ok(Number(ok.attributes[GENERATE_ATTR.rerankMs]) > 0);
    const bad = spans.find((s) => s !== ok)!;
    assert.equal(bad.attributes['rpc.grpc.status_code'], status.INVALID_ARGUMENT);
    assert.equal(bad.attributes[GENERATE_ATTR.candidates], 4, 'as asked, even when refused');
  } finally {
    await rx.close();
  }
});
