// telemetry: gRPC interceptors trace a server-streaming Generate across processes (client here as
// dalle-cli, server in a child as dalle-sampler) with request attributes, status codes and the sampler metrics.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  GENERATE_ATTR,
  GENERATE_SECONDS_BUCKETS,
  grpcClientTracing,
  initTelemetry,
  METRIC_NAMES,
  shutdownTelemetry,
  withSpan,
} from '../telemetry/index.ts';
import { OtlpReceiver } from './fixtures/otlp-receiver.ts';
import { FakeSamplerClient, type FakeGenerateRequest } from './fixtures/telemetry-grpc.ts';
import { spawnChild } from './fixtures/telemetry-spawn.ts';

function generate(
  client: grpc.Client,
  req: FakeGenerateRequest,
): Promise<{ events: any[]; code: number; details: string }> {
  return new Promise((resolve) => {
    const events: any[] = [];
    const call = (client as any).Generate(req) as grpc.ClientReadableStream<unknown>;
    call.on('data', (e: unknown) => events.push(e));
    call.on('error', () => undefined); // the status below says it
    call.on('status', (s: grpc.StatusObject) => resolve({ events, code: s.code, details: s.details }));
  });
}

test('telemetry: Generate is traced on client and server with attributes, status and sampler metrics', async () => {
  const rx = await OtlpReceiver.start();
  const server = spawnChild('grpc-server', {}, rx.env('http/json', 300));
  let client: grpc.Client | undefined;
  try {
    initTelemetry({ serviceName: 'dalle-cli', env: rx.env('http/protobuf') });
    const { port } = (await server.next()) as { port: number };
    client = new FakeSamplerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
      interceptors: [grpcClientTracing()],
    });

    const ok = await withSpan('cli.generate', {}, () =>
      generate(client!, { caption: 'a red square on a blue circle', numImages: 2 }),
    );
    assert.equal(ok.code, grpc.status.OK, ok.details);
    assert.equal(ok.events.length, 2);
    const bad = await generate(client, { caption: 'x', numImages: 0 });
    assert.equal(bad.code, grpc.status.INVALID_ARGUMENT);
    await shutdownTelemetry();

    const servers = await rx.waitFor('two server spans', () => {
      const s = rx.spans.filter(
        (x) => x.name === 'dalle.v1.Sampler/Generate' && x.service === 'dalle-sampler',
      );
      return s.length === 2 ? s : undefined;
    });
    const clients = rx.spans.filter(
      (x) => x.name === 'dalle.v1.Sampler/Generate' && x.service === 'dalle-cli',
    );
    assert.equal(clients.length, 2);
    const root = rx.spans.find((x) => x.name === 'cli.generate')!;

    // The good call: cli.generate → client span → server span → the handler's own child span.
    const okClient = clients.find((c) => c.traceId === root.traceId)!;
    assert.equal(okClient.parentSpanId, root.spanId);
    assert.equal(okClient.kind, 3);
    assert.equal(okClient.attributes['rpc.grpc.status_code'], 0);
    assert.equal(okClient.attributes[GENERATE_ATTR.numImages], 2);
    assert.equal(okClient.status.code, 0);
    const okServer = servers.find((s) => s.traceId === root.traceId)!;
    assert.equal(
      okServer.parentSpanId,
      okClient.spanId,
      'the server span continues the client span across processes',
    );
    assert.equal(okServer.kind, 2);
    assert.deepEqual(
      [
        okServer.attributes['rpc.system'],
        okServer.attributes['rpc.service'],
        okServer.attributes['rpc.method'],
      ],
      ['grpc', 'dalle.v1.Sampler', 'Generate'],
    );
    assert.equal(okServer.attributes['rpc.grpc.status_code'], 0);
    assert.equal(okServer.attributes[GENERATE_ATTR.numImages], 2);
    assert.equal(okServer.attributes[GENERATE_ATTR.textTokens], 7, 'set by the handler on the active span');
    assert.equal(okServer.attributes[GENERATE_ATTR.modelVersion], 7);
    const sample = await rx.waitFor('the handler span', () =>
      rx.spans.find((s) => s.name === 'sampler.sample'),
    );
    assert.equal(sample.parentSpanId, okServer.spanId, 'the handler runs inside the server span');
    assert.equal(ok.events[0].handlerSpanId, okServer.spanId);

    // The rejected call: its own trace, INVALID_ARGUMENT on both sides; a client error, not a server fault.
    const badClient = clients.find((c) => c !== okClient)!;
    const badServer = servers.find((s) => s !== okServer)!;
    assert.equal(badServer.parentSpanId, badClient.spanId);
    assert.equal(badClient.attributes['rpc.grpc.status_code'], grpc.status.INVALID_ARGUMENT);
    assert.equal(badClient.status.code, 2);
    assert.match(badClient.status.message ?? '', /INVALID_ARGUMENT: numImages must be at least 1/);
    assert.equal(badServer.attributes['rpc.grpc.status_code'], grpc.status.INVALID_ARGUMENT);
    assert.equal(badServer.status.code, 0, 'INVALID_ARGUMENT leaves the server span status unset');
    assert.equal(badServer.attributes[GENERATE_ATTR.numImages], 0, 'the request as sent');

    // Sampler metrics: latency per status code, in-flight back to 0, queue depth back to 0.
    server.stop();
    assert.equal((await server.exited).code, 0);
    const lat = (code: number) =>
      rx.latestPoint(
        METRIC_NAMES.generateSeconds,
        (p) => p.service === 'dalle-sampler' && p.attributes['rpc.grpc.status_code'] === code,
      );
    const okLat = lat(0)!;
    assert.ok(okLat, rx.summary());
    assert.equal(okLat.count, 1);
    assert.deepEqual(okLat.explicitBounds, GENERATE_SECONDS_BUCKETS);
    assert.ok(okLat.sum! > 0.05 && okLat.sum! < 30, `two 30 ms images took ${okLat.sum} s`);
    assert.equal(lat(grpc.status.INVALID_ARGUMENT)?.count, 1);
    assert.equal(rx.latestPoint(METRIC_NAMES.inFlight, (p) => p.service === 'dalle-sampler')?.value, 0);
    assert.equal(rx.latestPoint(METRIC_NAMES.queueDepth, (p) => p.service === 'dalle-sampler')?.value, 0);
  } finally {
    client?.close();
    server.stop();
    await server.exited;
    await shutdownTelemetry();
    await rx.close();
  }
});
