// foundation: a real worker runs a real workflow whose activity uses the real JetStream object store.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { connect } from 'nats';
import { serviceEnv } from '../infra/services.ts';
import { createPingActivities } from './fixtures/ping-activities.ts';

test('foundation: workflow → activity → JetStream object store round trip', async () => {
  const env = serviceEnv();
  const nc = await connect({ servers: env.natsUrl });
  const taskQueue = `foundation-${process.pid}-${Date.now()}`;
  const worker = await Worker.create({
    connection: await NativeConnection.connect({ address: env.temporalAddress }),
    namespace: env.temporalNamespace,
    taskQueue,
    workflowsPath: fileURLToPath(new URL('./fixtures/ping-workflow.ts', import.meta.url)),
    activities: createPingActivities({ nc }),
  });
  const connection = await Connection.connect({ address: env.temporalAddress });
  const client = new Client({ connection, namespace: env.temporalNamespace });
  try {
    const text = `hello ${Math.random()}`;
    const result = await worker.runUntil(
      client.workflow.execute('ping', { taskQueue, workflowId: taskQueue, args: [`obj-${taskQueue}`, text] }),
    );
    assert.equal(result, text);
    // The object really is in JetStream, outside the workflow.
    const os = await nc.jetstream().views.os('dalle-foundation-test');
    const info = await os.info(`obj-${taskQueue}`);
    assert.equal(info?.size, new TextEncoder().encode(text).length);
    await os.delete(`obj-${taskQueue}`);
  } finally {
    await connection.close();
    await nc.close();
  }
});
