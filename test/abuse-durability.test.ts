// abuse: faults a months-long run meets, against the suite's real Temporal + NATS and real `dalle worker`s:
// one of two workers absent for far longer than heartbeatTimeout × maxRestarts (the run waits, spending
// no restart), the same run id started again with another spec (refused, by the CLI and by the workers),
// and one synchronous step far longer than heartbeatTimeout (the rank is kept, nothing restarts).
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { connect } from 'nats';
import { WorkflowFailedError } from '@temporalio/client';
import { TASK_QUEUE, WORKFLOW_TYPE, stageWorkflowId, type TrainDalleWorkflow } from '../contract/index.ts';
import { resolveSpec } from '../config/index.ts';
import { openStores } from '../store/index.ts';
import {
  dalle,
  progress,
  startWorker,
  temporal,
  waitFor,
  writeSpec,
  type WorkerProc,
} from './fixtures/cluster.ts';

/** A short tiny run that fails fast when something is wrong: 5 s heartbeats (2 s ones time out on a
 *  loaded 2-core machine), 1 restart allowed. */
const HEARTBEAT_S = 5;
const quick = (over: Record<string, unknown> = {}) => ({
  preset: 'tiny',
  dvae: { steps: 4 },
  transformer: { steps: 4 },
  rerank: { steps: 0 },
  train: {
    segmentSteps: 2,
    checkpointEvery: 2,
    heartbeatTimeout: HEARTBEAT_S,
    maxRestarts: 1,
    joinTimeout: 3,
    collectiveTimeout: 30,
    ...over,
  },
});

async function stopAll(workers: WorkerProc[]): Promise<void> {
  await Promise.all(workers.map((w) => w.kill('SIGTERM')));
}

/** The workers' last lines (without stack frames), for a failed test's report. */
function diagnose(t: TestContext, workers: WorkerProc[]): void {
  for (const w of workers)
    t.diagnostic(
      w.output
        .filter((l) => !/^\[\w+\]\s+at /.test(l))
        .slice(-60)
        .join('\n'),
    );
}

test('abuse: with one of two workers absent for 4 × heartbeatTimeout × maxRestarts the run waits, spends no restart, then finishes', async (t) => {
  const tag = `${process.pid}-${Date.now()}`;
  const run = `absent-${tag}`;
  const workers = [startWorker({}, 'only')];
  const { client, close } = await temporal();
  const nc = await connect({ servers: process.env.NATS_URL });
  const { checkpoints } = await openStores({ nc });
  try {
    assert.equal(dalle(['train', '--config', writeSpec(quick()), '--run-id', run, '--detach']).code, 0);
    const waiting = await waitFor(
      'a rank to report whom it waits for',
      async () => {
        const p = await progress(client, run, checkpoints);
        return p?.waitingFor?.length ? p : undefined;
      },
      120_000,
      250,
    );
    t.diagnostic(`waiting for rank(s) ${waiting?.waitingFor}`);
    await new Promise((r) => setTimeout(r, 4 * HEARTBEAT_S * 1000)); // × maxRestarts (1)
    const st = JSON.parse(dalle(['status', run, '--json']).out) as { status: string; restarts: number };
    assert.equal(st.status, 'running', 'still waiting, not failed');
    assert.equal(st.restarts, 0, 'waiting spent no restart');

    workers.push(startWorker({}, 'late'));
    const result = await client.workflow.getHandle<TrainDalleWorkflow>(run).result();
    assert.equal(result.transformer.step, 4);
    assert.equal(result.restarts, 0);
  } catch (e) {
    diagnose(t, workers);
    throw e;
  } finally {
    await stopAll(workers);
    await close();
    await nc.close();
  }
});

test('abuse: the same run id with another spec is refused by the CLI and by the workers', async (t) => {
  const run = `respec-${process.pid}-${Date.now()}`;
  const workers = [startWorker({}, 'a'), startWorker({}, 'b')];
  const { client, close } = await temporal();
  try {
    assert.equal(dalle(['train', '--config', writeSpec(quick()), '--run-id', run, '--detach']).code, 0);
    await client.workflow.getHandle<TrainDalleWorkflow>(run).result();

    // The same run id, another spec: the CLI refuses before anything starts…
    const other = writeSpec(quick({ seed: 7 }));
    const again = dalle(['train', '--config', other, '--run-id', run]);
    assert.equal(again.code, 2, again.err);
    assert.match(again.err, /already has checkpoints of another spec/);
    // …and a client that skips the CLI gets a run that fails at once, naming the problem, not one that
    // trains a different model on these checkpoints.
    const handle = await client.workflow.start<TrainDalleWorkflow>(WORKFLOW_TYPE.trainDalle, {
      taskQueue: TASK_QUEUE,
      workflowId: run,
      args: [{ runId: run, spec: resolveSpec(quick({ seed: 7 })) }],
    });
    await assert.rejects(handle.result(), (e: Error) => {
      assert.ok(e instanceof WorkflowFailedError);
      const text = JSON.stringify(e, Object.getOwnPropertyNames(e)) + String(e.cause?.message);
      assert.match(text, /SpecMismatchError|another spec/, text.slice(0, 2000));
      return true;
    });
  } catch (e) {
    diagnose(t, workers);
    throw e;
  } finally {
    await stopAll(workers);
    await close();
  }
});

test('abuse: a synchronous step 4 × heartbeatTimeout long keeps its rank: no timeout, no restart', async (t) => {
  const run = `busy-${process.pid}-${Date.now()}`;
  const workers = [startWorker({ DALLE_TEST_BLOCK_AT: `dvae:1:${4 * HEARTBEAT_S}` }, 'busy')];
  const { client, close } = await temporal();
  try {
    const spec = writeSpec(quick({ worldSize: 1, stepTimeout: 60 }));
    assert.equal(dalle(['train', '--config', spec, '--run-id', run, '--detach']).code, 0);
    const result = await client.workflow.getHandle<TrainDalleWorkflow>(run).result();
    assert.equal(result.transformer.step, 4);
    assert.equal(result.restarts, 0, 'the busy rank was not given up on');
    // The block outlived the worker core's own timer (which then drops the rank's outcome): the helper
    // thread kept the server's view alive and the outcome went by task token.
    const log = workers[0]!.output.join('\n');
    assert.match(log, /the helper thread kept the activity alive/);
    assert.match(log, /reported the outcome by task token \(completed\)/);
    const history = await client.workflow.getHandle(stageWorkflowId(run, 'dvae')).fetchHistory();
    const events = history.events ?? [];
    assert.equal(
      events.filter((e) => e.activityTaskTimedOutEventAttributes).length,
      0,
      'no activity timed out',
    );
    assert.equal(events.filter((e) => e.activityTaskCompletedEventAttributes).length > 0, true);
  } catch (e) {
    diagnose(t, workers);
    throw e;
  } finally {
    await stopAll(workers);
    await close();
  }
});
