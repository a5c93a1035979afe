// telemetry: checkpoint parts stored and loaded through a traced real CheckpointStore (local-folder backend)
// give one span each with bytes and sha256, and the checkpoint seconds histogram; training step gauges.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { openStores } from '../store/index.ts';
import {
  initTelemetry,
  METRIC_NAMES,
  recordTrainStep,
  shutdownTelemetry,
  traceCheckpointStore,
  withSpan,
} from '../telemetry/index.ts';
import { OtlpReceiver } from './fixtures/otlp-receiver.ts';

test('telemetry: checkpoint save/load spans carry bytes and sha256; step gauges arrive', async () => {
  const rx = await OtlpReceiver.start();
  const dir = mkdtempSync(join(tmpdir(), 'tel-ck-'));
  try {
    initTelemetry({ serviceName: 'dalle-worker', env: rx.env('http/protobuf') });
    const { checkpoints: raw } = await openStores({ dir });
    const checkpoints = traceCheckpointStore(raw);
    const bytes = new Uint8Array(3000).map((_, i) => (i * 7) % 251);
    const sha = createHash('sha256').update(bytes).digest('hex');
    await withSpan('trainShard', {}, async () => {
      const ref = await checkpoints.putPart('run-ck', 'dvae', 5, 'params', bytes);
      assert.deepEqual(
        ref,
        { name: 'params', sha256: sha, bytes: 3000 },
        'the wrapper returns what the store returns',
      );
      const m = await checkpoints.commit({ runId: 'run-ck', stage: 'dvae', step: 5, parts: [ref] });
      assert.deepEqual(await checkpoints.loadPart(m, 'params'), bytes);
      // A load that fails (part not in the manifest) is an ERROR span and the store's own error.
      await assert.rejects(checkpoints.loadPart(m, 'rank7'), { name: 'CorruptPartError' });
      assert.equal((await checkpoints.latest('run-ck', 'dvae'))?.step, 5, 'other methods pass through');
    });
    recordTrainStep({
      runId: 'run-ck',
      stage: 'dvae',
      loss: 0.75,
      stepsPerSec: 2.5,
      bytesRaw: 4000,
      bytesSent: 1000,
    });
    recordTrainStep({
      runId: 'run-ck',
      stage: 'dvae',
      loss: NaN,
      stepsPerSec: 0,
      bytesRaw: 10,
      bytesSent: 0,
    }); // nothing to record
    await shutdownTelemetry();

    const root = rx.spans.find((s) => s.name === 'trainShard')!;
    const save = rx.spans.find((s) => s.name === 'checkpoint.save')!;
    const loads = rx.spans.filter((s) => s.name === 'checkpoint.load');
    assert.ok(root && save && loads.length === 2, rx.summary());
    assert.equal(save.parentSpanId, root.spanId);
    assert.deepEqual(
      [
        save.attributes['dalle.checkpoint.bytes'],
        save.attributes['dalle.checkpoint.sha256'],
        save.attributes['dalle.checkpoint.key'],
        save.attributes['dalle.step'],
      ],
      [3000, sha, 'runs/run-ck/dvae/5/params', 5],
    );
    const [ok, bad] = [loads.find((s) => s.status.code === 0)!, loads.find((s) => s.status.code === 2)!];
    assert.deepEqual(
      [ok.attributes['dalle.checkpoint.bytes'], ok.attributes['dalle.checkpoint.sha256']],
      [3000, sha],
    );
    assert.match(bad.status.message ?? '', /CorruptPartError/);
    const ops = rx.points
      .filter((p) => p.name === METRIC_NAMES.checkpointSeconds)
      .map((p) => [p.attributes['dalle.checkpoint.op'], p.count]);
    assert.deepEqual(ops.sort(), [
      ['load', 2],
      ['save', 1],
    ]);
    assert.equal(rx.latestPoint(METRIC_NAMES.loss)?.value, 0.75);
    assert.equal(rx.latestPoint(METRIC_NAMES.stepsPerSecond)?.value, 2.5);
    assert.equal(rx.latestPoint(METRIC_NAMES.compressionRate)?.value, 4);
  } finally {
    await shutdownTelemetry();
    await rx.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
