// `dalle worker`: one process polling task queue `dalle-train` with `slots` rank slots (default 1: one
// rank per process, so a kill takes out exactly one rank), and its host's queue `dalle-train@<host>` for
// the ranks a sharded run places on this host (the two share the slots: rank-slots.ts). Connections reconnect forever: a restart of
// the Temporal server or of nats-server pauses work, it does not end it. SIGTERM/SIGINT shut down
// gracefully: running activities are cancelled and stop at a step boundary; nothing half-written is
// ever read (parts are committed only by manifest).
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Client } from '@temporalio/client';
import {
  DefaultLogger,
  NativeConnection,
  Runtime,
  Worker,
  type WorkerOptions as WorkerCreateOptions,
} from '@temporalio/worker';
import { answerPresence, createActivities, HeartbeatThread } from '../../activities/index.ts';
import { hostTaskQueue, TASK_QUEUE } from '../../contract/index.ts';
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
import { RankSlots } from './rank-slots.ts';
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
  // Loads and connects its Temporal client now, so a rank's first heartbeat never waits for it.
  const heartbeats = HeartbeatThread.start(temporal, (m) => log(m));
  const activities = createActivities({
    nc,
    ...stores,
    // Every checkpoint part stored or loaded is a span with bytes and sha256.
    checkpoints: traceCheckpointStore(stores.checkpoints),
    client,
    heartbeats,
    log,
    hostId,
    taskQueue,
  });
  // The survey of a placement runs on one of the workers it counts: that worker is not busy for it.
  const rankSlots = new RankSlots(slots, ['placeRanks']);
  const connection = await NativeConnection.connect(temporalConnectionOptions(temporal));
  const workers = await createWorkers(
    { connection, namespace: temporal.namespace, identity, activities },
    taskQueue,
    hostId,
    rankSlots,
  );
  // Elastic runs and placement ask who is there and how many slots are idle (activities/presence.ts).
  const presence = answerPresence(nc, () => ({
    identity,
    hostId,
    taskQueue,
    slots,
    busy: rankSlots.busy,
  }));
  log(
    `polling ${taskQueue} and ${hostTaskQueue(taskQueue, hostId)} on ${temporal.address} (${describeTemporalAuth(temporal)}; NATS ` +
      `${redactUrl(nats.url)}, ${describeNatsAuth(nats)}${nats.rankSignerFile ? ', per-run rank credentials' : ''}), ` +
      `${slots} slot(s), host ${hostId}`,
  );
  const idle =
    opts.exitWhenIdleSec === undefined ? undefined : exitWhenIdle(workers, opts.exitWhenIdleSec, log);
  try {
    // Either stopping (a signal, idle exit, a fatal error) stops both.
    const stopAll = () => workers.forEach((w) => w.getState() === 'RUNNING' && w.shutdown());
    await Promise.all(workers.map((w) => w.run().finally(stopAll)));
  } finally {
    if (idle) clearInterval(idle);
    presence.unsubscribe();
    await heartbeats.close();
    await clientConnection.close().catch(() => undefined);
    await nc.drain().catch(() => undefined);
  }
}

/** The shared queue's worker (workflows and every activity) and the host queue's (activities only: the
 *  ranks a sharded segment places on this host), sharing the process's rank slots. */
async function createWorkers(
  common: Pick<WorkerCreateOptions, 'connection' | 'namespace' | 'identity' | 'activities'>,
  taskQueue: string,
  hostId: string,
  rankSlots: RankSlots,
): Promise<Worker[]> {
  const options = {
    // Tracing: workflow + activity interceptors and the workflow span sink (telemetry/temporal.ts).
    ...temporalWorkerOptions(),
    ...common,
    shutdownGraceTime: '20 seconds',
  };
  return [
    await Worker.create({
      ...options,
      taskQueue,
      workflowsPath: fileURLToPath(new URL(`../../workflows/index${MODULE_EXT}`, import.meta.url)),
      tuner: rankSlots.tuner(),
    }),
    await Worker.create({
      ...options,
      taskQueue: hostTaskQueue(taskQueue, hostId),
      tuner: rankSlots.tuner(),
    }),
  ];
}

/** Shuts the workers down once nothing has run in them for `seconds`. */
function exitWhenIdle(workers: Worker[], seconds: number, log: (msg: string) => void): NodeJS.Timeout {
  let idleSince = Date.now();
  return setInterval(() => {
    const s = workers.map((w) => w.getStatus());
    if (s.some((x) => x.runState !== 'RUNNING')) return;
    if (s.some((x) => x.numInFlightActivities > 0 || x.numInFlightWorkflowActivations > 0))
      idleSince = Date.now();
    else if (Date.now() - idleSince >= seconds * 1000) {
      log(`idle for ${seconds} s: stopping`);
      for (const w of workers) w.shutdown();
    }
  }, 1000);
}
