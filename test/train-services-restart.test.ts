// train: a run survives a restart of nats-server and of the Temporal dev server mid-segment. Uses a stack
// of its own (ports, $DALLE_HOME) so the shared test services are never disturbed.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { connect, type NatsConnection } from 'nats';
import type { TrainDalleWorkflow } from '../contract/index.ts';
import { openStores } from '../store/index.ts';
import { dalle, progress, startWorker, waitFor, writeSpec, type WorkerProc } from './fixtures/cluster.ts';

test(
  'train: survives nats-server and Temporal server restarts mid-segment',
  { timeout: 15 * 60_000 },
  async (t) => {
    const home = mkdtempSync(join(tmpdir(), 'dalle-restart-'));
    const env = {
      DALLE_HOME: home,
      TEMPORAL_ADDRESS: '127.0.0.1:17533',
      NATS_URL: 'nats://127.0.0.1:14633',
      DALLE_TEMPORAL_UI: '0',
    };
    const up = () =>
      JSON.parse(dalle(['up', '--json'], env).out).services as {
        name: string;
        pid: number;
        action: string;
      }[];
    let workers: WorkerProc[] = [];
    let connection: Connection | undefined;
    let nc: NatsConnection | undefined;
    try {
      const services = up();
      workers = [startWorker(env, 'w0'), startWorker(env, 'w1')];
      connection = await Connection.connect({ address: env.TEMPORAL_ADDRESS });
      const client = new Client({ connection });
      const runId = `restart-${process.pid}-${Date.now()}`;
      assert.equal(
        dalle(['train', '--config', writeSpec({ preset: 'tiny' }), '--run-id', runId, '--detach'], env).code,
        0,
      );
      const handle = client.workflow.getHandle<TrainDalleWorkflow>(runId);
      // Step-level progress is rank 0's record in NATS (it reconnects across the restart below).
      nc = await connect({ servers: env.NATS_URL, maxReconnectAttempts: -1, reconnectTimeWait: 250 });
      const { checkpoints } = await openStores({ nc });
      const at = async (stage: string, step: number) =>
        waitFor(
          `${stage} step ${step}`,
          async () => {
            const p = await progress(client, runId, checkpoints).catch(() => undefined);
            return p && (p.stage === stage ? p.step >= step : p.stage !== 'dvae') ? p : undefined;
          },
          5 * 60_000,
          100,
        );

      await at('dvae', 3);
      const nats = services.find((s) => s.name === 'nats')!;
      process.kill(nats.pid, 'SIGKILL');
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(up().find((s) => s.name === 'nats')!.action, 'restarted');

      await at('dvae', 13);
      const temporal = services.find((s) => s.name === 'temporal')!;
      process.kill(temporal.pid, 'SIGTERM');
      await waitFor(
        'temporal exit',
        async () => {
          try {
            process.kill(temporal.pid, 0);
            return false;
          } catch {
            return true;
          }
        },
        30_000,
      );
      assert.equal(up().find((s) => s.name === 'temporal')!.action, 'restarted');

      const result = await handle.result();
      assert.equal(result.dvae.step, 20);
      assert.equal(result.transformer.step, 20);
      t.diagnostic(`restarts after service restarts: ${result.restarts}`);
    } catch (e) {
      for (const w of workers) t.diagnostic(w.output.slice(-30).join('\n'));
      throw e;
    } finally {
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      await connection?.close();
      await nc?.close();
      dalle(['down'], env);
      rmSync(home, { recursive: true, force: true });
    }
  },
);
