// train: host-aware placement on real workers, 2 hosts × 2 ranks (`dalle worker --host-id a|b`). The
// workers of host b start first, so that without placement the longest-waiting pollers (b's) would take
// ranks 0 and 1 and the hosts would mix; with it, the stage surveys the hosts and schedules ranks 0, 1 on
// `dalle-train@a` and 2, 3 on `dalle-train@b` (read from the ranks' own reports of their host). Then a
// host that answers the survey but has no worker polling its queue (it vanished after answering) gets a
// whole segment: after the bounded wait every rank goes to the shared queue, the stage says so, and the
// segment runs on the workers that are there.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultPayloadConverter, type Client } from '@temporalio/client';
import { connect } from 'nats';
import { serviceEnv } from '../infra/services.ts';
import { answerPresence } from '../activities/index.ts';
import { openStores } from '../store/index.ts';
import { stageWorkflowId, TASK_QUEUE, type TrainShardResult } from '../contract/index.ts';
import {
  dalle,
  progress,
  startWorker,
  temporal,
  waitFor,
  writeSpec,
  type WorkerProc,
} from './fixtures/cluster.ts';

const spec = {
  preset: 'tiny',
  dvae: { steps: 2 },
  transformer: { steps: 2 },
  train: {
    worldSize: 4,
    parameterSharding: 'host',
    segmentSteps: 2,
    checkpointEvery: 2,
    joinTimeout: 20, // a placed rank waits 5 s for its host's workers
    heartbeatTimeout: 15,
  },
};

/** The dVAE stage's first segment: each rank's result and the queue it was scheduled on, by rank. */
async function firstSegment(client: Client, run: string) {
  const history = await client.workflow
    .getHandle(stageWorkflowId(run, 'dvae'))
    .fetchHistory()
    .catch(() => undefined); // not started yet
  const events = history?.events ?? [];
  const queueOf = new Map<string, string>();
  const ranks: { rank: number; hostId?: string; queue: string }[] = [];
  for (const e of events) {
    const s = e.activityTaskScheduledEventAttributes;
    if (s?.activityType?.name === 'trainShard') queueOf.set(String(e.eventId), s.taskQueue?.name ?? '');
    const c = e.activityTaskCompletedEventAttributes;
    const queue = c ? queueOf.get(String(c.scheduledEventId)) : undefined;
    if (!c || queue === undefined) continue;
    const r = defaultPayloadConverter.fromPayload<TrainShardResult>(c.result!.payloads![0]!);
    ranks[r.rank] = { rank: r.rank, hostId: r.hostId, queue };
  }
  return ranks.filter(Boolean).length === 4 ? ranks : undefined;
}

test(
  'train: a sharded segment places ranks 0,1 on host a and 2,3 on host b; a vanished host falls back',
  { timeout: 10 * 60_000 },
  async (t) => {
    const nc = await connect({ servers: serviceEnv().natsUrl });
    const { checkpoints } = await openStores({ nc });
    const { client, close } = await temporal();
    const workers: WorkerProc[] = [];
    const host = (id: string, n: number) => {
      const w = startWorker({}, `${id}${n}`, ['--host-id', id]);
      workers.push(w);
      return waitFor(
        `${id}${n} to poll`,
        async () => w.output.some((l) => l.includes('polling')),
        3 * 60_000,
      );
    };
    const runs: string[] = [];
    try {
      await Promise.all([host('b', 0), host('b', 1)]);
      await Promise.all([host('a', 0), host('a', 1)]);

      const placed = `placed-${process.pid}-${Date.now()}`;
      runs.push(placed);
      assert.equal(dalle(['train', '--config', writeSpec(spec), '--run-id', placed, '--detach']).code, 0);
      const ranks = await waitFor('the first segment', () => firstSegment(client, placed), 5 * 60_000, 1000);
      t.diagnostic(ranks.map((r) => `rank ${r.rank}: ${r.hostId} via ${r.queue}`).join(', '));
      assert.deepEqual(
        ranks.map((r) => r.hostId),
        ['a', 'a', 'b', 'b'],
      );
      assert.deepEqual(
        ranks.map((r) => r.queue),
        ['a', 'a', 'b', 'b'].map((h) => `${TASK_QUEUE}@${h}`),
      );
      await client.workflow.getHandle(placed).terminate('placement checked');

      // Host 'ghost' answers with 4 free slots (G = 4 on one host beats 2 × 2), but nothing polls its queue.
      const ghost = answerPresence(nc, () => ({
        identity: 'ghost-0',
        hostId: 'ghost',
        taskQueue: TASK_QUEUE,
        slots: 4,
        busy: 0,
      }));
      const fallback = `fallback-${process.pid}-${Date.now()}`;
      runs.push(fallback);
      try {
        assert.equal(dalle(['train', '--config', writeSpec(spec), '--run-id', fallback, '--detach']).code, 0);
        const after = await waitFor(
          'the first segment',
          () => firstSegment(client, fallback),
          5 * 60_000,
          1000,
        );
        t.diagnostic(after.map((r) => `rank ${r.rank}: ${r.hostId} via ${r.queue}`).join(', '));
        assert.ok(
          after.every((r) => r.queue === TASK_QUEUE && ['a', 'b'].includes(r.hostId!)),
          'ran via the shared queue',
        );
        const events = (await progress(client, fallback, checkpoints))?.events ?? [];
        t.diagnostic(events.join('\n'));
        for (let rank = 0; rank < 4; rank++)
          assert.ok(
            events.some((e) =>
              e.startsWith(
                `dvae: rank ${rank} of dvae-g0 placed on ${TASK_QUEUE}@ghost was not taken within 5 s`,
              ),
            ),
            `rank ${rank}'s fallback is reported`,
          );
      } finally {
        ghost.unsubscribe();
      }
    } catch (e) {
      for (const w of workers) t.diagnostic(w.output.slice(-30).join('\n'));
      throw e;
    } finally {
      for (const run of runs)
        await client.workflow
          .getHandle(run)
          .terminate()
          .catch(() => undefined);
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      await close();
      await nc.close();
    }
  },
);
