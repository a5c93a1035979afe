// telemetry: what initTelemetry exports (and does not) to a real OTLP/HTTP receiver on loopback.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  dalleMetrics,
  GENERATE_SECONDS_BUCKETS,
  initTelemetry,
  METRIC_NAMES,
  observeQueueDepth,
  SHORT_SECONDS_BUCKETS,
  shutdownTelemetry,
  traceAllReduce,
  traceCheckpoint,
  withSpan,
} from '../telemetry/index.ts';
import { OtlpReceiver } from './fixtures/otlp-receiver.ts';
import { spawnChild } from './fixtures/telemetry-spawn.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const protocol of ['http/json', 'http/protobuf'] as const) {
  test(`telemetry: spans and metrics reach an OTLP/HTTP receiver (${protocol})`, async () => {
    const rx = await OtlpReceiver.start();
    try {
      const t = initTelemetry({ serviceName: 'dalle-cli', runId: 'run-x', env: rx.env(protocol) });
      assert.deepEqual(t.exporting, { traces: true, metrics: true });
      const train = { 'dalle.run_id': 'run-x', 'dalle.stage': 'dvae' } as const;
      await withSpan('cli.train', { k: 'v' }, async () => {
        await traceAllReduce(
          { runId: 'run-x', stage: 'dvae', step: 7, rank: 1, worldSize: 2, tag: 'P', bytesRaw: 4096 },
          async (s) => s.setResult({ bytesSent: 512, chunks: 3 }),
        );
        await traceCheckpoint('save', { runId: 'run-x', stage: 'dvae', step: 7, part: 'state' }, async (s) =>
          s.setResult({ bytes: 123, sha256: 'ab'.repeat(32) }),
        );
        await assert.rejects(
          withSpan('fails', {}, async () => {
            throw new RangeError('bad step');
          }),
          RangeError,
        );
      });
      const m = dalleMetrics();
      m.loss.record(2.5, train);
      m.stepsPerSecond.record(0.8, train);
      m.compressionRate.record(8, train);
      m.checkpointSeconds.record(0.2, { ...train, 'dalle.checkpoint.op': 'load' });
      m.restarts.add(1, train);
      m.generateSeconds.record(3.5, { 'rpc.method': 'Generate', 'rpc.grpc.status_code': 0 });
      let queued = 5;
      observeQueueDepth(() => queued);
      queued = 2; // read at export time, not at registration
      m.inFlight.add(1, { 'rpc.method': 'Generate' });
      await shutdownTelemetry(); // flushes both signals

      assert.deepEqual(rx.rejected, []);
      const wantType = protocol === 'http/json' ? 'application/json' : 'application/x-protobuf';
      assert.ok(
        rx.requests.length >= 2 && rx.requests.every((r) => r.contentType === wantType),
        JSON.stringify(rx.requests),
      );

      const byName = new Map(rx.spans.map((s) => [s.name, s]));
      const root = byName.get('cli.train')!;
      const ar = byName.get('collective.allReduce')!;
      const ck = byName.get('checkpoint.save')!;
      const failed = byName.get('fails')!;
      assert.ok(root && ar && ck && failed, rx.summary());
      assert.equal(root.parentSpanId, undefined);
      for (const s of [ar, ck, failed]) {
        assert.equal(s.traceId, root.traceId);
        assert.equal(s.parentSpanId, root.spanId, `${s.name} is a child of the root`);
      }
      assert.equal(root.service, 'dalle-cli');
      assert.equal(root.resource['dalle.run_id'], 'run-x');
      assert.equal(root.resource['service.namespace'], 'dalle');
      assert.deepEqual(
        {
          step: ar.attributes['dalle.step'],
          w: ar.attributes['dalle.world_size'],
          rank: ar.attributes['dalle.rank'],
          raw: ar.attributes['dalle.allreduce.bytes_raw'],
          sent: ar.attributes['dalle.allreduce.bytes_sent'],
          chunks: ar.attributes['dalle.allreduce.chunks'],
          tag: ar.attributes['dalle.allreduce.tag'],
        },
        { step: 7, w: 2, rank: 1, raw: 4096, sent: 512, chunks: 3, tag: 'P' },
      );
      assert.equal(ck.attributes['dalle.checkpoint.bytes'], 123);
      assert.equal(ck.attributes['dalle.checkpoint.sha256'], 'ab'.repeat(32));
      assert.equal(failed.status.code, 2);
      assert.match(failed.status.message ?? '', /RangeError: bad step/);
      assert.equal(failed.events[0]?.name, 'exception');

      const point = (name: string) => {
        const p = rx.latestPoint(name);
        assert.ok(p, `metric ${name} arrived; ${rx.summary()}`);
        assert.equal(p.service, 'dalle-cli');
        return p;
      };
      assert.equal(point(METRIC_NAMES.loss).value, 2.5);
      assert.equal(point(METRIC_NAMES.loss).attributes['dalle.stage'], 'dvae');
      assert.equal(point(METRIC_NAMES.stepsPerSecond).value, 0.8);
      assert.equal(point(METRIC_NAMES.compressionRate).value, 8);
      const arh = point(METRIC_NAMES.allReduceSeconds);
      assert.equal(arh.type, 'histogram');
      assert.equal(arh.count, 1);
      assert.deepEqual(arh.explicitBounds, SHORT_SECONDS_BUCKETS);
      assert.equal(arh.attributes['dalle.rank'], 1);
      assert.ok(arh.sum! >= 0 && arh.sum! < 5, `all-reduce took ${arh.sum} s`);
      // One checkpoint save timed by traceCheckpoint, one load recorded by hand.
      const ckOps = rx.points
        .filter((p) => p.name === METRIC_NAMES.checkpointSeconds)
        .map((p) => p.attributes['dalle.checkpoint.op']);
      assert.deepEqual(new Set(ckOps), new Set(['save', 'load']));
      const restarts = point(METRIC_NAMES.restarts);
      assert.deepEqual([restarts.type, restarts.isMonotonic, restarts.value], ['sum', true, 1]);
      const gen = point(METRIC_NAMES.generateSeconds);
      assert.deepEqual(gen.explicitBounds, GENERATE_SECONDS_BUCKETS);
      assert.equal(gen.sum, 3.5);
      // 3.5 s falls in the (2, 5] bucket: index 3 of the bounds [0.5, 1, 2, 5, …].
      assert.equal(gen.bucketCounts![3], 1);
      const q = point(METRIC_NAMES.queueDepth);
      assert.deepEqual([q.type, q.value], ['gauge', 2]);
      assert.equal(point(METRIC_NAMES.inFlight).value, 1);
    } finally {
      await shutdownTelemetry();
      await rx.close();
    }
  });
}

/** Listens where the OTLP exporters send by default (localhost:4318, v4 and v6), to catch a default exporter
 *  that was built although no endpoint was set. Undefined where the port is taken. */
async function defaultPortReceivers(): Promise<OtlpReceiver[]> {
  const out: OtlpReceiver[] = [];
  for (const host of ['127.0.0.1', '::1']) {
    try {
      out.push(await OtlpReceiver.start(4318, host));
    } catch {
      // taken, or no IPv6 here: the other checks still stand
    }
  }
  return out;
}

test('telemetry: nothing is exported and nothing fails without an OTLP endpoint', async (t) => {
  const defaults = await defaultPortReceivers();
  const rx = await OtlpReceiver.start();
  try {
    if (defaults.length === 0) t.diagnostic('port 4318 is taken here: the default-endpoint check is skipped');
    // 1. No OTEL_* at all.
    const child = spawnChild('noop', {}, {});
    const report = await child.next();
    assert.deepEqual(report, {
      exporting: { traces: false, metrics: false },
      recording: false,
      natsTraceparent: null,
      grpcTraceparent: null,
    });
    assert.deepEqual(await child.next(), { done: true });
    const { code, stderr } = await child.exited;
    assert.equal(code, 0, stderr);
    assert.equal(stderr.trim(), '', 'nothing is logged');
    // 2. An endpoint, but the SDK switched off.
    const off = spawnChild('noop', {}, { ...rx.env('http/json'), OTEL_SDK_DISABLED: 'true' });
    assert.deepEqual((await off.next()).exporting, { traces: false, metrics: false });
    assert.equal((await off.exited).code, 0);
    await sleep(500); // anything in flight would have landed by now
    for (const r of [rx, ...defaults]) assert.deepEqual(r.requests, [], `nothing reached ${r.url}`);
  } finally {
    await Promise.all([rx, ...defaults].map((r) => r.close()));
  }
});

test('telemetry: an unreachable collector does not fail the process', async () => {
  // A port that was free a moment ago and is closed now: connection refused.
  const gone = await OtlpReceiver.start();
  const url = gone.url;
  await gone.close();
  const t0 = Date.now();
  const child = spawnChild(
    'noop',
    {},
    { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_TIMEOUT: '1000' },
  );
  const report = await child.next();
  assert.deepEqual(report.exporting, { traces: true, metrics: true });
  assert.equal(report.recording, true);
  assert.match(String(report.natsTraceparent), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  assert.equal(report.grpcTraceparent, report.natsTraceparent);
  assert.deepEqual(await child.next(), { done: true });
  const { code, stderr } = await child.exited;
  assert.equal(code, 0, stderr);
  assert.ok(Date.now() - t0 < 30_000, 'shutdown is bounded by the export timeout');
  // The operator is told (diag logger at ERROR when exporting), once per failed export, not by a crash.
  assert.match(stderr, /ECONNREFUSED|export|connect/i);
});
