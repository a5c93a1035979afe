// telemetry: W3C trace context crosses a real nats-server between two processes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from 'nats';
import { serviceEnv } from '../infra/services.ts';
import { extractNatsContext, initTelemetry, shutdownTelemetry, withSpan } from '../telemetry/index.ts';
import { context } from '@opentelemetry/api';
import { OtlpReceiver } from './fixtures/otlp-receiver.ts';
import { spawnChild } from './fixtures/telemetry-spawn.ts';

test('telemetry: traceparent crosses NATS between processes', async () => {
  const rx = await OtlpReceiver.start();
  const nc = await connect({ servers: serviceEnv().natsUrl });
  try {
    initTelemetry({ serviceName: 'dalle-cli', env: rx.env('http/json') });
    const subject = `dalle.telemetry-${process.pid}-${Date.now()}.g.rs.0.0`;
    const sub = nc.subscribe(subject, { max: 1, timeout: 30_000 });
    await nc.flush(); // subscribed on the server before the publisher starts
    const child = spawnChild('nats-pub', { subject }, rx.env('http/protobuf'));
    let received = '';
    for await (const m of sub) {
      received = m.headers?.get('traceparent') ?? '';
      await context.with(extractNatsContext(m.headers), () =>
        withSpan('nats.receiver', {}, async () => undefined),
      );
    }
    const pub = (await child.next()) as { traceId: string; spanId: string };
    assert.equal((await child.exited).code, 0);
    assert.equal(
      received,
      `00-${pub.traceId}-${pub.spanId}-01`,
      'the message carries the publisher span as traceparent',
    );
    await shutdownTelemetry();

    const [publisher, receiver] = await rx.waitFor('publisher and receiver spans', () => {
      const p = rx.spans.find((s) => s.name === 'nats.publisher');
      const r = rx.spans.find((s) => s.name === 'nats.receiver');
      return p && r ? ([p, r] as const) : undefined;
    });
    assert.equal(publisher.service, 'dalle-worker');
    assert.equal(receiver.service, 'dalle-cli');
    assert.equal(receiver.traceId, publisher.traceId);
    assert.equal(receiver.parentSpanId, publisher.spanId);
  } finally {
    await shutdownTelemetry();
    await nc.close();
    await rx.close();
  }
});
