// `dalle worker`: one process polling task queue `dalle-train` with `slots` rank slots (default 1: one
// rank per process, so a kill takes out exactly one rank). Connections reconnect forever: a restart of
// the Temporal server or of nats-server pauses work, it does not end it. SIGTERM/SIGINT shut down
// gracefully: running activities are cancelled and stop at a step boundary; nothing half-written is
// ever read (parts are committed only by manifest).
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';
import { answerPresence, createActivities } from '../../activities/index.ts';
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
import { temporalLogLevel } from './log-level.ts';
import { MODULE_EXT } from '../../config/package-root.ts';

export interface WorkerOptions {
  slots?: number;
  taskQueue?: string;
  /** The machine this worker's ranks share (default: the hostname). Ranks of one host shard parameters
   *  among themselves when a run uses train.parameterSharding 'host'. */
  hostId?: string;
  /** Stop (exit 0) after this many seconds with nothing running: a worker started for a backlog (a KEDA
   *  ScaledJob) goes away once the work is done, and is never killed mid-step by a scale-in. */
  exitWhenIdleSec?: number;
  /** Identity shown in Temporal (default: dalle-worker@<host>:<pid>). */
  identity?: string;
}

let runtimeInstalled = false;

export async function runWorker(opts: WorkerOptions = {}): Promise<void> {
  const nats = natsSecurity();
  const temporal = temporalSecurity();
  if (!runtimeInstalled) {
    Runtime.install({ logger: new DefaultLogger(temporalLogLevel(process.env.DALLE_LOG_LEVEL)) });
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
  const hostId = opts.hostId ?? hostname();
  const taskQueue = opts.taskQueue ?? TASK_QUEUE;
  const slots = opts.slots ?? 1;
  const log = (msg: string, fields?: Record<string, unknown>) =>
    process.stderr.write(`[${identity}] ${msg}${fields ? ` ${JSON.stringify(fields)}` : ''}\n`);
  const worker = await Worker.create({
    // Tracing: workflow + activity interceptors and the workflow span sink (telemetry/temporal.ts).
    ...temporalWorkerOptions(),
    connection: await NativeConnection.connect(temporalConnectionOptions(temporal)),
    namespace: temporal.namespace,
    taskQueue,
    identity,
    workflowsPath: fileURLToPath(new URL(`../../workflows/index${MODULE_EXT}`, import.meta.url)),
    // Every checkpoint part stored or loaded is a span with bytes and sha256.
    activities: createActivities({
      nc,
      ...stores,
      checkpoints: traceCheckpointStore(stores.checkpoints),
      client,
      log,
      hostId,
      taskQueue,
    }),
    maxConcurrentActivityTaskExecutions: slots,
    shutdownGraceTime: '20 seconds',
  });
  // Elastic runs ask who is there and how many slots are idle (activities/presence.ts).
  const presence = answerPresence(nc, () => ({
    identity,
    hostId,
    taskQueue,
    slots,
    busy: worker.getStatus().numInFlightActivities,
  }));
  log(
    `polling ${taskQueue} on ${temporal.address} (${describeTemporalAuth(temporal)}; NATS ` +
      `${redactUrl(nats.url)}, ${describeNatsAuth(nats)}${nats.rankSignerFile ? ', per-run rank credentials' : ''}), ` +
      `${slots} slot(s), host ${hostId}`,
  );
  const idle =
    opts.exitWhenIdleSec === undefined ? undefined : exitWhenIdle(worker, opts.exitWhenIdleSec, log);
  try {
    await worker.run();
  } finally {
    if (idle) clearInterval(idle);
    presence.unsubscribe();
    await clientConnection.close().catch(() => undefined);
    await nc.drain().catch(() => undefined);
  }
}

/** Shuts the worker down once nothing has run in it for `seconds`. */
function exitWhenIdle(worker: Worker, seconds: number, log: (msg: string) => void): NodeJS.Timeout {
  let idleSince = Date.now();
  return setInterval(() => {
    const s = worker.getStatus();
    if (s.runState !== 'RUNNING') return;
    if (s.numInFlightActivities > 0 || s.numInFlightWorkflowActivations > 0) idleSince = Date.now();
    else if (Date.now() - idleSince >= seconds * 1000) {
      log(`idle for ${seconds} s: stopping`);
      worker.shutdown();
    }
  }, 1000);
}
