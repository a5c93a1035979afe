// telemetry: the Temporal interceptors make client → workflow → child workflow → rank activities →
// all-reduce one trace across processes (test process = CLI, child process = worker), against the real
// Temporal dev server and nats-server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { serviceEnv } from '../infra/services.ts';
import {
  initTelemetry,
  shutdownTelemetry,
  temporalClientInterceptors,
  withSpan,
} from '../telemetry/index.ts';
import { OtlpReceiver, type ReceivedSpan } from './fixtures/otlp-receiver.ts';
import { spawnChild } from './fixtures/telemetry-spawn.ts';

test('telemetry: one trace from a Temporal client through both workflows to every rank activity and its all-reduce; restarts through the workflow sink', async () => {
  const env = serviceEnv();
  const rx = await OtlpReceiver.start();
  const runId = `tel-${process.pid}-${Date.now()}`;
  const worker = spawnChild('worker', { taskQueue: runId }, rx.env('http/protobuf'));
  let connection: Connection | undefined;
  try {
    initTelemetry({ serviceName: 'dalle-cli', runId, env: rx.env('http/json') });
    assert.deepEqual(await worker.next(), { ready: true });
    connection = await Connection.connect({ address: env.temporalAddress });
    const client = new Client({
      connection,
      namespace: env.temporalNamespace,
      interceptors: temporalClientInterceptors(),
    });
    const sum = await withSpan('cli.train', {}, () =>
      client.workflow.execute('telemetryParent', {
        taskQueue: runId,
        workflowId: runId,
        args: [runId, 2],
        workflowExecutionTimeout: '3 minutes',
      }),
    );
    assert.equal(sum, 3, 'each rank summed 1 + 2 over NATS');
    await shutdownTelemetry();

    const want = [
      'RunWorkflow:telemetryParent',
      'RunWorkflow:telemetryChild',
      'RunActivity:rankStep',
      'collective.allReduce',
    ];
    await rx.waitFor('the worker spans', () => {
      const names = rx.spans.map((s) => s.name);
      return (
        want.every((n) => names.includes(n)) &&
        names.filter((n) => n === 'collective.allReduce').length === 2 &&
        names.filter((n) => n === 'RunActivity:rankStep').length === 2
      );
    });
    assert.deepEqual(rx.rejected, []);

    const root = rx.spans.find((s) => s.name === 'cli.train')!;
    const trace = rx.spans.filter((s) => s.traceId === root.traceId);
    const one = (name: string, service: string): ReceivedSpan => {
      const found = trace.filter((s) => s.name === name);
      assert.equal(found.length, 1, `one ${name} in the trace; ${rx.summary()}`);
      assert.equal(found[0]!.service, service, `${name} comes from ${service}`);
      return found[0]!;
    };
    const childOf = (s: ReceivedSpan, parent: ReceivedSpan) =>
      assert.equal(
        s.parentSpanId,
        parent.spanId,
        `${s.name} (${s.service}) is a child of ${parent.name} (${parent.service})`,
      );

    assert.equal(root.service, 'dalle-cli');
    const start = one('StartWorkflow:telemetryParent', 'dalle-cli');
    childOf(start, root);
    const runParent = one('RunWorkflow:telemetryParent', 'dalle-worker');
    childOf(runParent, start);
    const startChild = one('StartChildWorkflow:telemetryChild', 'dalle-worker');
    childOf(startChild, runParent);
    const runChild = one('RunWorkflow:telemetryChild', 'dalle-worker');
    childOf(runChild, startChild);

    const startActs = trace.filter((s) => s.name === 'StartActivity:rankStep');
    const runActs = trace.filter((s) => s.name === 'RunActivity:rankStep');
    const allReduces = trace.filter((s) => s.name === 'collective.allReduce');
    assert.equal(startActs.length, 2);
    assert.equal(runActs.length, 2);
    assert.equal(allReduces.length, 2);
    for (const s of startActs) childOf(s, runChild);
    for (const s of runActs) {
      const parent = startActs.find((p) => p.spanId === s.parentSpanId);
      assert.ok(parent, 'each RunActivity is the child of its own StartActivity');
      assert.equal(s.attributes.temporalWorkflowId, `${runId}-stage`);
    }
    assert.deepEqual(new Set(runActs.map((s) => s.parentSpanId)).size, 2);
    const ranks = allReduces.map((s) => s.attributes['dalle.rank']).sort();
    assert.deepEqual(ranks, [0, 1]);
    for (const ar of allReduces) {
      assert.ok(
        runActs.some((a) => a.spanId === ar.parentSpanId),
        'the all-reduce runs inside its rank activity',
      );
      assert.equal(ar.attributes['dalle.world_size'], 2);
      assert.equal(ar.attributes['dalle.allreduce.bytes_raw'], 8);
      assert.ok(Number(ar.attributes['dalle.allreduce.bytes_sent']) >= 8);
      assert.ok(Number(ar.attributes['dalle.allreduce.chunks']) >= 1);
      // The peer's traceparent came in the NATS headers: a link to the other rank's all-reduce span.
      const peer = allReduces.find((p) => p !== ar)!;
      assert.ok(
        ar.links.some((l) => l.spanId === peer.spanId && l.traceId === peer.traceId),
        `rank ${String(ar.attributes['dalle.rank'])} links to its peer's all-reduce span`,
      );
    }

    // The workflow's restart went through the sink to the worker's dalle.train.restarts counter.
    worker.stop();
    assert.equal((await worker.exited).code, 0);
    const restarts = rx.latestPoint('dalle.train.restarts', (p) => p.attributes['dalle.run_id'] === runId);
    assert.ok(restarts, rx.summary());
    assert.deepEqual(
      [restarts.service, restarts.value, restarts.attributes['dalle.stage']],
      ['dalle-worker', 1, 'dvae'],
    );
  } finally {
    worker.stop();
    const { code, stderr } = await worker.exited;
    await shutdownTelemetry();
    await connection?.close();
    await rx.close();
    assert.equal(code, 0, stderr);
  }
});
