// train: the paper's layout on real worker processes, 2 hosts × 2 ranks (`dalle worker --host-id a|b`):
// parameters sharded within each host, PowerSGD between the hosts. Host b dies mid-step (both its
// workers SIGKILL themselves at dVAE step 7, while host a's ranks are in that step's collectives); the run
// resumes from the last committed checkpoint on host a alone (elastic: its 2 ranks, error buffers
// re-sharded from 2 hosts to 1, optimizer shards as saved), adopts host b again once two new workers
// answer (a whole host at a time), trains the reranker on both hosts, and publishes its model. Every
// checkpoint has its sample grid and quality point, drawn from the EMA gathered from the optimizer shards.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect } from 'nats';
import { serviceEnv } from '../infra/services.ts';
import { openStores, type CheckpointManifest } from '../store/index.ts';
import { pauseSignal, resumeSignal, type TrainDalleWorkflow } from '../contract/index.ts';
import {
  dalle,
  progress,
  startWorker,
  temporal,
  waitFor,
  writeSpec,
  type WorkerProc,
} from './fixtures/cluster.ts';

const EVERY = 5;

test(
  'train: 2 hosts × 2 ranks sharded; a host dies mid-step, the run goes on, on one host, then two',
  { timeout: 20 * 60_000 },
  async (t) => {
    const spec = {
      preset: 'tiny',
      dvae: { steps: 20 },
      transformer: { steps: 20 },
      train: {
        worldSize: 4,
        parameterSharding: 'host',
        elastic: { min: 2, max: 4 },
        keepCheckpoints: 10,
        joinTimeout: 12,
        collectiveTimeout: 6,
        heartbeatTimeout: 15,
      },
    };
    const nc = await connect({ servers: serviceEnv().natsUrl });
    const { checkpoints } = await openStores({ nc });
    const { client, close } = await temporal();
    const host = (id: string, n: number, env: Record<string, string> = {}) =>
      startWorker(env, `${id}${n}`, ['--host-id', id]);
    const workers: WorkerProc[] = [
      host('a', 0),
      host('a', 1),
      host('b', 0, { DALLE_TEST_SIGKILL_AT: 'dvae:7' }),
      host('b', 1, { DALLE_TEST_SIGKILL_AT: 'dvae:7' }),
    ];
    const run = `sharded-${process.pid}-${Date.now()}`;
    try {
      assert.equal(dalle(['train', '--config', writeSpec(spec), '--run-id', run, '--detach']).code, 0);
      await waitFor(
        'host b to die',
        async () => workers.slice(2).every((w) => w.proc.signalCode === 'SIGKILL'),
        10 * 60_000,
      );
      const shrunk = await waitFor(
        'the run to go on with host a alone',
        async () =>
          (await progress(client, run, checkpoints))?.events.find((e) =>
            e.startsWith('dvae: world size 4 → 2 (elastic'),
          ),
        5 * 60_000,
      );
      t.diagnostic(shrunk);
      // Two new workers on host b, adopted at a checkpoint once both answer. They start once host a's
      // ranks train alone (so that no rank of that segment is placed on host b), and the run holds at its
      // next segment boundary until they poll, so that the adoption comes before the run ends however
      // slowly they start.
      await waitFor(
        'host a to train alone',
        async () => {
          const p = await progress(client, run, checkpoints);
          return p?.stage === 'dvae' && p.worldSize === 2 && p.step > 5;
        },
        5 * 60_000,
        100,
      );
      await client.workflow.getHandle(run).signal(pauseSignal);
      workers.push(host('b', 2), host('b', 3));
      await waitFor(
        'host b to be back',
        async () => workers.slice(4).every((w) => w.output.some((l) => l.includes('polling'))),
        5 * 60_000,
      );
      await client.workflow.getHandle(run).signal(resumeSignal);
      const result = await client.workflow.getHandle<TrainDalleWorkflow>(run).result();
      assert.ok(result.model.version >= 1, 'published');

      const p = (await progress(client, run, checkpoints))!;
      t.diagnostic(p.events.join('\n'));
      // Another relaunch may follow (a rank of a relaunch can miss the join on a loaded machine), so the
      // resume is looked for among the events, not only in the last one.
      assert.ok(
        p.events.some((e) => /^dvae resumes from checkpoint 5 as group/.test(e)),
        'resumed from the checkpoint committed before host b died',
      );
      assert.ok(
        p.events.some((e) => / world size 2 → 4 at checkpoint/.test(e)),
        `host b adopted again:\n${p.events.join('\n')}`,
      );
      const layouts: string[] = [];
      const losses: number[] = [];
      for (const stage of ['dvae', 'transformer', 'rerank'])
        for (let step = EVERY; step <= 20; step += EVERY) {
          const m = (await checkpoints.manifestAt(run, stage, step)) as CheckpointManifest;
          const l = m.meta.layout as { hosts: number; perHost: number };
          layouts.push(`${stage}@${step}: ${l.hosts}×${l.perHost}`);
          if (stage === 'dvae') losses.push(...(m.meta.losses as number[]));
          // Observability as in the flat layout: rank 0 draws each checkpoint's grid from the EMA it
          // gathers from the optimizer shards (the reranker draws none).
          if (stage !== 'rerank')
            assert.ok(
              m.parts.some((part) => part.name === 'samples'),
              `${stage}@${step} has a sample grid`,
            );
        }
      const measured = (p.quality ?? []).map((q) => `${q.stage}@${q.step}`);
      t.diagnostic(`quality measured at ${measured.join(', ')}`);
      for (const at of ['dvae@5', 'dvae@20', 'transformer@20'])
        assert.ok(measured.includes(at), `quality measured at ${at}`);
      t.diagnostic(layouts.join(', '));
      t.diagnostic(`dvae losses ${losses.map((x) => x.toFixed(4)).join(' ')}`);
      assert.equal(layouts[0], 'dvae@5: 2×2');
      assert.equal(layouts[1], 'dvae@10: 1×2', 'host a alone, its ranks still sharded');
      assert.ok(
        layouts.some((l, i) => i > 1 && l.endsWith('2×2')),
        'two hosts again',
      );
      assert.ok(losses.every(Number.isFinite) && losses.at(-1)! < 0.8 * losses[0]!, 'the dVAE trained');
      // The reranker (tiny trains 20 steps of it) in the same layout: its ranks gather the pairs' embeddings
      // across both hosts, and the bundle's reranker comes from its optimizer shards' EMA.
      assert.ok(
        layouts.includes('rerank@20: 2×2'),
        `the reranker trained sharded on two hosts: ${layouts.join(', ')}`,
      );
      assert.ok(
        workers[0]!.output.some((l) => l.includes('1 slot(s), host a')),
        'workers know their host',
      );
    } catch (e) {
      t.diagnostic(
        (await progress(client, run, checkpoints).catch(() => undefined))?.events.join('\n') ?? 'no progress',
      );
      for (const w of workers) t.diagnostic(w.output.slice(-20).join('\n'));
      throw e;
    } finally {
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      await close();
      await nc.close();
    }
  },
);
