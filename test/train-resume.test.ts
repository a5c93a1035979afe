// train: a tiny run (W = 2, PowerSGD on) whose workers are SIGKILLed once in each of its three stages, and
// whose newest checkpoint is then corrupted, ends with parameters bit-identical to an uninterrupted run of
// the same spec and seed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from 'nats';
import { serviceEnv } from '../infra/services.ts';
import { openStores, type CheckpointStore } from '../store/index.ts';
import type { TrainDalleWorkflow } from '../contract/index.ts';
import {
  dalle,
  progress,
  startWorker,
  temporal,
  waitFor,
  writeSpec,
  type WorkerProc,
} from './fixtures/cluster.ts';

async function paramsSha(ck: CheckpointStore, runId: string, stage: string): Promise<string> {
  const m = await ck.latest(runId, stage);
  assert.ok(m, `${runId} has a committed ${stage} checkpoint`);
  return m.parts.find((p) => p.name === 'params')!.sha256;
}

test(
  'train: SIGKILLed workers and a corrupted checkpoint still give bit-identical parameters',
  { timeout: 20 * 60_000 },
  async (t) => {
    const spec = { preset: 'tiny' };
    const specFile = writeSpec(spec);
    const nc = await connect({ servers: serviceEnv().natsUrl });
    const { checkpoints } = await openStores({ nc });
    const { client, close } = await temporal();
    let workers: WorkerProc[] = [startWorker({}, 'w0'), startWorker({}, 'w1')];
    const tag = `${process.pid}-${Date.now()}`;
    try {
      // 1. The reference: uninterrupted.
      const ref = `ref-${tag}`;
      assert.equal(dalle(['train', '--config', specFile, '--run-id', ref, '--detach']).code, 0);
      const refResult = await client.workflow.getHandle<TrainDalleWorkflow>(ref).result();
      assert.equal(refResult.restarts, 0);
      assert.ok(refResult.rerank, 'the tiny preset trains a reranker');
      const refSha = {
        dvae: await paramsSha(checkpoints, ref, 'dvae'),
        transformer: await paramsSha(checkpoints, ref, 'transformer'),
        rerank: await paramsSha(checkpoints, ref, 'rerank'),
      };

      // 2. The same spec, with a worker SIGKILLed in each stage (the first victim's replacement is the third).
      // Each victim SIGKILLs itself when one of its ranks reaches the step (DALLE_TEST_SIGKILL_AT), so the
      // kill always lands mid-segment however fast the machine is.
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      workers = [
        startWorker({ DALLE_TEST_SIGKILL_AT: 'dvae:7' }, 'w0'),
        startWorker({ DALLE_TEST_SIGKILL_AT: 'transformer:13' }, 'w1'),
      ];
      const run = `kill-${tag}`;
      assert.equal(dalle(['train', '--config', specFile, '--run-id', run, '--detach']).code, 0);
      const kills: {
        stage: string;
        step: number;
        committed: number;
        resumedAfterMs: number;
        resumedFrom: number;
      }[] = [];
      for (const [i, stage, atStep, replacementKillsAt] of [
        [0, 'dvae', 7, 'rerank:13'],
        [1, 'transformer', 13, undefined],
        [0, 'rerank', 13, undefined],
      ] as const) {
        const victim = workers[i]!;
        await waitFor(
          `worker ${i} to die at ${stage} step ${atStep}`,
          async () => victim.proc.exitCode !== null || victim.proc.signalCode !== null,
          5 * 60_000,
          50,
        );
        assert.equal(victim.proc.signalCode, 'SIGKILL');
        const killedAt = Date.now();
        const committed = (await checkpoints.latest(run, stage))!.step;
        const restartsBefore = kills.length; // restarts counted before this kill (one per earlier kill)
        workers[i] = startWorker(
          replacementKillsAt ? { DALLE_TEST_SIGKILL_AT: replacementKillsAt } : {},
          `w${i}'${kills.length}`,
        );
        // Resumed: the relaunch starts from the checkpoint committed when the worker died, and progress
        // moves past it again. Step-level progress is live only while its stage runs (the KV record), so a
        // short last stage may be over before a poll sees it: a checkpoint committed past the resume point
        // is the same evidence.
        const after = await waitFor(
          'progress after the kill',
          async () => {
            const p = await progress(client, run, checkpoints);
            const r = p?.lastResume;
            if (!r || r.stage !== stage || r.restarts <= restartsBefore) return undefined;
            if (p.step > r.fromStep) return p;
            const latest = await checkpoints.latest(run, stage).catch(() => undefined);
            return latest && latest.step > r.fromStep ? p : undefined;
          },
          5 * 60_000,
          100,
        );
        kills.push({
          stage,
          step: atStep,
          committed,
          resumedAfterMs: Date.now() - killedAt,
          resumedFrom: after.lastResume!.fromStep,
        });
        assert.equal(after.lastResume!.fromStep, committed, 'resumed from the last committed checkpoint');
        assert.ok(atStep - committed <= 5, `lost ${atStep - committed} steps > checkpointEvery`);
      }
      const result = await client.workflow.getHandle<TrainDalleWorkflow>(run).result();
      assert.ok(result.restarts >= 3, `restarts ${result.restarts}`);
      assert.equal(await paramsSha(checkpoints, run, 'dvae'), refSha.dvae);
      assert.equal(await paramsSha(checkpoints, run, 'transformer'), refSha.transformer);
      assert.equal(await paramsSha(checkpoints, run, 'rerank'), refSha.rerank);
      t.diagnostic(`kills: ${JSON.stringify(kills)}`);

      // 3. Corruption: both workers die at dVAE step 12, a byte of the newest committed params part (step 10)
      //    is flipped, fresh workers resume.
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      workers = [
        startWorker({ DALLE_TEST_SIGKILL_AT: 'dvae:12' }, 'w0'),
        startWorker({ DALLE_TEST_SIGKILL_AT: 'dvae:12' }, 'w1'),
      ];
      // The same dVAE and transformer; no rerank stage (it changes neither, and the suite's time is short).
      const run3 = `flip-${tag}`;
      const noRerank = writeSpec({ ...spec, rerank: { steps: 0 } });
      assert.equal(dalle(['train', '--config', noRerank, '--run-id', run3, '--detach']).code, 0);
      await waitFor(
        'both workers to die at dVAE step 12',
        async () => workers.every((w) => w.proc.signalCode === 'SIGKILL'),
        5 * 60_000,
        50,
      );
      const m = (await checkpoints.latest(run3, 'dvae'))!;
      const key = checkpoints.partKey(run3, 'dvae', m.step, 'params');
      const bytes = (await checkpoints.backend.getObject(key))!;
      bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
      await checkpoints.backend.putObject(key, bytes);
      workers = [startWorker({}, 'w0"'), startWorker({}, 'w1"')];
      const result3 = await client.workflow.getHandle<TrainDalleWorkflow>(run3).result();
      assert.ok(result3.restarts >= 1);
      const st = JSON.parse(dalle(['status', run3, '--json']).out) as {
        status: string;
        progress: { events: string[] };
      };
      assert.equal(st.status, 'completed');
      assert.ok(
        st.progress.events.some(
          (e) => e.includes(`checkpoint fallback: step ${m.step} unusable`) && e.includes('does not match'),
        ),
        st.progress.events.join('\n'),
      );
      assert.equal(
        await paramsSha(checkpoints, run3, 'transformer'),
        refSha.transformer,
        'resumed from the previous checkpoint, still exact',
      );
    } catch (e) {
      for (const w of workers) t.diagnostic(w.output.slice(-40).join('\n'));
      throw e;
    } finally {
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      await close();
      await nc.close();
    }
  },
);

test('train: an invalid spec is rejected before any workflow starts, naming each bad field', async () => {
  const bad = writeSpec({
    preset: 'tiny',
    train: { worldSize: 9, checkpointEvery: 0 },
    dvae: { codebookSize: 'many' },
  });
  const r = dalle(['train', '--config', bad, '--run-id', `bad-${process.pid}`]);
  assert.equal(r.code, 2);
  for (const f of ['train.checkpointEvery', 'dvae.codebookSize', 'train.worldSize'])
    assert.match(r.err, new RegExp(f.replace('.', '\\.')));
  const { client, close } = await temporal();
  try {
    await assert.rejects(client.workflow.getHandle(`bad-${process.pid}`).describe(), /not found/i);
  } finally {
    await close();
  }
});
