// `dalle worker`: one process polling task queue `dalle-train` with `slots` rank slots (default 1: one
// rank per process, so a kill takes out exactly one rank). Connections reconnect forever: a restart of
// the Temporal server or of nats-server pauses work, it does not end it. SIGTERM/SIGINT shut down
// gracefully: running activities are cancelled and stop at a step boundary; nothing half-written is
// ever read (parts are committed only by manifest).
import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { createActivities } from '../../activities/index.ts';
import { TASK_QUEUE } from '../../contract/index.ts';
import { connectNats, describeNatsAuth, redactUrl } from '../../security/nats.ts';
import { natsSecurity, temporalSecurity } from '../../security/settings.ts';
import { connectTemporal, describeTemporalAuth, temporalConnectionOptions } from '../../security/temporal.ts';
import { openStores } from '../../store/index.ts';
import {
  temporalClientInterceptors,
  temporalWorkerOptions,
  traceCheckpointStore,
} from '../../telemetry/index.ts';

export interface WorkerOptions {
  slots?: number;
  taskQueue?: string;
  /** Identity shown in Temporal (default: dalle-worker@<host>:<pid>). */
  identity?: string;
}

let runtimeInstalled = false;

export async function runWorker(opts: WorkerOptions = {}): Promise<void> {
  const nats = natsSecurity();
  const temporal = temporalSecurity();
  if (!runtimeInstalled) {
    Runtime.install({ logger: new DefaultLogger((process.env.DALLE_LOG_LEVEL as 'WARN') || 'WARN') });
    runtimeInstalled = true;
  }
  const identity = opts.identity ?? `dalle-worker@${process.pid}`;
  const nc = await connectNats({ name: identity, maxReconnectAttempts: -1, reconnectTimeWait: 500 }, nats);
  const stores = await openStores({ nc });
  const clientConnection = await connectTemporal({}, temporal);
  const client = new Client({
    connection: clientConnection,
    namespace: temporal.namespace,
    interceptors: temporalClientInterceptors(),
  });
  const log = (msg: string, fields?: Record<string, unknown>) =>
    process.stderr.write(`[${identity}] ${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}\n`);
  const worker = await Worker.create({
    // Tracing: workflow + activity interceptors and the workflow span sink (telemetry/temporal.ts).
    ...temporalWorkerOptions(),
    connection: await NativeConnection.connect(temporalConnectionOptions(temporal)),
    namespace: temporal.namespace,
    taskQueue: opts.taskQueue ?? TASK_QUEUE,
    identity,
    workflowsPath: fileURLToPath(new URL('../../workflows/index.ts', import.meta.url)),
    // Every checkpoint part stored or loaded is a span with bytes and sha256.
    activities: createActivities({
      nc,
      ...stores,
      checkpoints: traceCheckpointStore(stores.checkpoints),
      client,
      log,
    }),
    maxConcurrentActivityTaskExecutions: opts.slots ?? 1,
    shutdownGraceTime: '20 seconds',
  });
  log(
    `polling ${opts.taskQueue ?? TASK_QUEUE} on ${temporal.address} (${describeTemporalAuth(temporal)}; NATS ` +
      `${redactUrl(nats.url)}, ${describeNatsAuth(nats)}${nats.rankSignerFile ? ', per-run rank credentials' : ''}), ` +
      `${opts.slots ?? 1} slot(s)`,
  );
  try {
    await worker.run();
  } finally {
    await clientConnection.close().catch(() => undefined);
    await nc.drain().catch(() => undefined);
  }
}
