// A rank's heartbeat that keeps flowing while its process is busy. One training step of a large model on
// CPU can keep the activity's thread busy for minutes, and every heartbeat sent from that thread waits.
// Temporal then gives up on a healthy rank twice over:
// - the server times the activity out: `ctx.heartbeat` only queues details for the worker's core (Rust),
//   which sends them at most every 0.8 × heartbeatTimeout; a blocked thread queues nothing;
// - the core keeps its own timer per activity (heartbeatTimeout plus a small buffer), reset only by the
//   context's heartbeats. When it fires, the core cancels the activity with reason TIMED_OUT, marks it
//   "not found" and drops whatever outcome the activity reports later. The server, no longer heartbeated
//   once the activity returned, then times it out: a segment that trained to its end counts as failed.
//
// So a worker thread with its own Temporal client heartbeats the activity by its task token (the server
// sees a live activity), and `signal` (use it instead of the context's cancellation signal) ignores a
// local TIMED_OUT when a heartbeat from the thread, sent at that moment, shows the server still has it;
// `settle` then reports the outcome to the server by task token, since the core will not. Both halves are
// needed (test/abuse-durability.test.ts fails without either). The thread vouches for the main thread only
// while it shows signs of life within `stallMs`: a process that is really hung still times out. A
// cancellation the workflow asks for reaches the thread in its heartbeat's answer and aborts `signal`.
//
// The thread runs plain CommonJS from a string (no TypeScript loader needed in it, before or after a build).
import { Worker } from 'node:worker_threads';
import { Client } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { Context } from '@temporalio/activity';
import { temporalSecurity } from '../security/settings.ts';
import { connectTemporal, temporalConnectionOptions } from '../security/temporal.ts';

export interface HeartbeatDetails {
  step: number;
  checkpointStep: number;
}

export interface Heartbeat {
  /** Marks the main thread alive and sets what the next heartbeats report. Cheap: call it often. */
  beat(details: HeartbeatDetails): void;
  /** Aborted when the activity is really cancelled (not by a local timeout the thread covered). */
  readonly signal: AbortSignal;
  /** Reports the activity's outcome by task token when the worker's core gave up on it locally (the core
   *  would drop it); a no-op otherwise. Call it with the result or the error, before `close`. */
  settle(outcome: { result: unknown } | { error: unknown }): Promise<void>;
  /** Stops both heartbeats. */
  close(): Promise<void>;
}

export interface HeartbeatOptions {
  /** How often to heartbeat (a quarter of the activity's heartbeat timeout is usual). */
  intervalMs: number;
  /** The longest the main thread may be silent (one synchronous step) before the thread stops vouching. */
  stallMs: number;
  log?: (msg: string) => void;
}

// Shared slots: [0] main thread last alive (ms since epoch), [1] step, [2] checkpointStep.
const THREAD = `
const { workerData, parentPort } = require('node:worker_threads');
const { Client, Connection } = require('@temporalio/client');
const shared = new Float64Array(workerData.shared);
let stopped = false;
let client;
const beat = () => client.activity.heartbeat(workerData.taskToken, { step: shared[1], checkpointStep: shared[2] });
// 'probe': is the activity alive on the server? One heartbeat now answers it.
const probe = () => (client ? beat() : Promise.reject(new Error('not connected'))).then(
  () => parentPort.postMessage({ alive: true }),
  (e) => parentPort.postMessage({ alive: false, name: String(e && e.name) }),
);
parentPort.on('message', (m) => { if (m === 'stop') stopped = true; else if (m === 'probe') probe(); });
(async () => {
  const connection = await Connection.connect(workerData.connection);
  client = new Client({ connection, namespace: workerData.namespace });
  while (!stopped) {
    await new Promise((r) => setTimeout(r, workerData.intervalMs));
    if (stopped) break;
    if (Date.now() - shared[0] > workerData.stallMs) continue; // the main thread is hung: let it time out
    try {
      await beat();
    } catch (e) {
      const name = String(e && e.name);
      // The workflow cancelled the rank, or the server no longer has it: tell the main thread, stop.
      if (/Cancelled|NotFound|Paused|Reset/.test(name)) { parentPort.postMessage({ gone: name }); break; }
    }
  }
  await connection.close().catch(() => {});
})().catch(() => {});
`;

export function startHeartbeat(ctx: Context, opts: HeartbeatOptions, first: HeartbeatDetails): Heartbeat {
  const shared = new Float64Array(new SharedArrayBuffer(3 * 8));
  const set = (d: HeartbeatDetails) => {
    shared[0] = Date.now();
    shared[1] = d.step;
    shared[2] = d.checkpointStep;
  };
  set(first);
  let details = first;
  ctx.heartbeat(details);
  const local = setInterval(() => {
    shared[0] = Date.now(); // the timer fired: the main thread is alive
    ctx.heartbeat(details);
  }, opts.intervalMs);
  const stop = new AbortController();
  let orphaned = false; // the core timed the activity out locally and will drop its outcome
  const sec = temporalSecurity();
  const thread = new Worker(THREAD, {
    eval: true,
    workerData: {
      shared: shared.buffer,
      taskToken: ctx.info.taskToken,
      namespace: sec.namespace,
      connection: temporalConnectionOptions(sec),
      intervalMs: opts.intervalMs,
      stallMs: opts.stallMs,
    },
  });
  thread.unref();
  let threadUp = true;
  let answered: () => void = () => undefined;
  let probing: Promise<void> | undefined; // settle waits for the answer
  thread.on('message', (m: { gone?: string; alive?: boolean; name?: string }) => {
    if (m.gone) stop.abort(new CancelledFailure(m.gone));
    else if (m.alive) {
      orphaned = true;
      opts.log?.('a long step outlived the heartbeat timeout; the helper thread kept the activity alive');
    } else if (m.alive === false) stop.abort(new CancelledFailure(`TIMED_OUT (${m.name})`));
    if (m.alive !== undefined) answered();
  });
  const onCancel = () => {
    const reason = ctx.cancellationSignal.reason;
    // The core's own timer gave up after a long step: the server decides whether the rank is still alive.
    if (threadUp && reason instanceof CancelledFailure && reason.message === 'TIMED_OUT') {
      probing = new Promise((r) => (answered = r));
      thread.postMessage('probe');
    } else stop.abort(reason);
  };
  ctx.cancellationSignal.addEventListener('abort', onCancel);
  if (ctx.cancellationSignal.aborted) onCancel();
  // A thread that cannot connect leaves the in-thread heartbeat, and nobody to ask.
  const down = () => {
    threadUp = false;
    answered();
  };
  thread.on('error', down);
  thread.on('exit', down);
  return {
    beat(d) {
      details = d;
      set(d);
    },
    signal: stop.signal,
    async settle(outcome) {
      await probing;
      if (!orphaned) return;
      const connection = await connectTemporal({}, sec);
      try {
        const client = new Client({ connection, namespace: sec.namespace });
        if ('result' in outcome) await client.activity.complete(ctx.info.taskToken, outcome.result);
        else await client.activity.fail(ctx.info.taskToken, outcome.error);
        opts.log?.(`reported the outcome by task token (${'result' in outcome ? 'completed' : 'failed'})`);
      } finally {
        await connection.close();
      }
    },
    async close() {
      clearInterval(local);
      ctx.cancellationSignal.removeEventListener('abort', onCancel);
      thread.postMessage('stop');
      await thread.terminate().catch(() => undefined);
    },
  };
}
