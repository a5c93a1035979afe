// workflows: recorded histories of real runs replay without non-determinism errors against today's code.
// A change that alters history must use patched() and keep these passing; record new ones with
// `client.workflow.getHandle(id).fetchHistory()` into test/fixtures/histories/.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, Runtime, Worker } from '@temporalio/worker';

const dir = fileURLToPath(new URL('./fixtures/histories/', import.meta.url));

test('workflows: recorded histories replay deterministically', async () => {
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const files = readdirSync(dir).filter((f) => f.endsWith('.json'));
  // train-stage-dvae-sharded-tiny: a sharded stage whose segment was placed on per-host queues.
  assert.ok(files.length >= 4, 'histories of trainDalle, both trainStage kinds and a placed sharded stage');
  const histories = files.map((f) => ({
    workflowId: f.replace(/\.json$/, ''),
    history: JSON.parse(readFileSync(dir + f, 'utf8')),
  }));
  const results = Worker.runReplayHistories(
    { workflowsPath: fileURLToPath(new URL('../workflows/index.ts', import.meta.url)) },
    histories,
  );
  let n = 0;
  for await (const r of results) {
    assert.equal(r.error, undefined, `${r.workflowId}: ${r.error?.message}`);
    n++;
  }
  assert.equal(n, files.length);
});
