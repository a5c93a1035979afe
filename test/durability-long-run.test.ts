// durability: a months-long run compressed in time. A private Temporal dev server suggests continue-as-new
// after SUGGEST_AFTER events (production: 4096), so a run of many one-step segments over three stages
// crosses the boundaries a long run crosses after days. Every run of the root's and each stage's chain
// must stay below a bound that does not grow with the run's length, the chains must really have
// continued as new, and `dalle status` must answer throughout, on both sides of each boundary.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import type { Client } from '@temporalio/client';
import { stageWorkflowId, type StageName, type TrainDalleWorkflow } from '../contract/index.ts';
import { startDevServer } from './fixtures/dev-server.ts';
import { CLI, startWorker, temporal, writeSpec, type WorkerProc } from './fixtures/cluster.ts';

/** The server suggests continue-as-new from this many events on. */
const SUGGEST_AFTER = 20;
/** A run continues as new at its next boundary (before a segment; between phases), so it may pass the
 *  suggestion by what happens until then: one segment's events for a stage (~17 with one rank: its
 *  activities, workflow tasks, a stage event), one phase's for the root (a stage child's start and end).
 *  Measured with 30 (load ~30 on 2 cores): stages 37–40 events per run, the root 33–34. */
const BOUND = SUGGEST_AFTER + 25;
const STAGES: StageName[] = ['dvae', 'transformer', 'rerank'];

/** Event counts of every run of `workflowId`'s continue-as-new chain, oldest first. */
async function chain(client: Client, workflowId: string): Promise<number[]> {
  const counts: number[] = [];
  let runId: string | undefined;
  for (;;) {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const events = history.events ?? [];
    counts.unshift(events.length);
    runId = events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId ?? undefined;
    if (!runId) return counts;
  }
}

/** `dalle status <run> --json`, asynchronously (the test polls it while the run goes on). */
function status(run: string): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((res) => {
    const p = spawn(process.execPath, [CLI, 'status', run, '--json'], { env: process.env });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('close', (code) => res({ code, out, err }));
  });
}

test('durability: a long run of many segments keeps every history bounded and `dalle status` answering across continue-as-new', async (t) => {
  const server = await startDevServer([
    '--dynamic-config-value',
    `limit.historyCount.suggestContinueAsNew=${SUGGEST_AFTER}`,
  ]);
  process.env.TEMPORAL_ADDRESS = server.address; // the worker, the CLI and this test's client
  let worker: WorkerProc | undefined;
  const { client, close } = await temporal();
  const run = `long-${process.pid}-${Date.now()}`;
  try {
    worker = startWorker({}, 'w');
    const spec = writeSpec({
      preset: 'tiny',
      dvae: { steps: 3 },
      transformer: { steps: 3 },
      rerank: { steps: 2 },
      train: {
        worldSize: 1,
        segmentSteps: 1,
        checkpointEvery: 1,
        qualityExamples: 0,
        sampleImages: 0,
        heartbeatTimeout: 10,
      },
    });
    const started = spawn(process.execPath, [CLI, 'train', '--config', spec, '--run-id', run, '--detach'], {
      env: process.env,
      stdio: 'inherit',
    });
    assert.equal(await new Promise((r) => started.on('close', r)), 0);
    const handle = client.workflow.getHandle<TrainDalleWorkflow>(run);

    // Poll status until the run ends; note which run of the root's chain answered each time.
    const seen: { rootRun: string; stage: string; step: number }[] = [];
    let done = false;
    const result = handle.result().finally(() => (done = true));
    while (!done) {
      const s = await status(run);
      assert.equal(s.code, 0, `dalle status failed mid-run: ${s.err}`);
      const st = JSON.parse(s.out) as { status: string; stage: string; step: number };
      assert.ok(['running', 'completed'].includes(st.status), s.out);
      const rootRun = (await handle.describe()).runId;
      seen.push({ rootRun, stage: st.stage, step: st.step });
    }
    const r = await result;
    assert.equal(r.transformer.step, 3);
    assert.equal(r.rerank?.step, 2);
    assert.equal(r.restarts, 0);
    const final = await status(run);
    assert.equal(final.code, 0, final.err);
    assert.equal((JSON.parse(final.out) as { status: string }).status, 'completed');

    const root = await chain(client, run);
    t.diagnostic(`root: events per run ${root.join(', ')}`);
    assert.ok(root.length >= 2, 'the root continued as new');
    assert.ok(Math.max(...root) <= BOUND, `root runs within ${BOUND} events`);
    for (const stage of STAGES) {
      const counts = await chain(client, stageWorkflowId(run, stage));
      t.diagnostic(`${stage}: events per run ${counts.join(', ')}`);
      assert.ok(counts.length >= 2, `${stage} continued as new`);
      assert.ok(Math.max(...counts) <= BOUND, `${stage} runs within ${BOUND} events`);
    }
    const rootRuns = new Set(seen.map((s) => s.rootRun));
    t.diagnostic(`dalle status answered ${seen.length} times, from ${rootRuns.size} runs of the root`);
    assert.ok(rootRuns.size >= 2, 'status answered on both sides of a root continue-as-new');
  } catch (e) {
    t.diagnostic(worker?.output.slice(-80).join('\n') ?? '');
    throw e;
  } finally {
    await worker?.kill('SIGTERM');
    await close();
    await server.stop();
  }
});
