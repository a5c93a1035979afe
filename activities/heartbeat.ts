// A rank's heartbeat that keeps flowing while its process is busy. Heartbeats sent from the activity's own
// thread stop whenever that thread runs a long synchronous stretch (one training step of a large model on
// CPU can take minutes), and Temporal would then declare a healthy worker dead. So besides the usual
// in-thread heartbeat (which also delivers cancellation), a worker thread with its own Temporal client
// heartbeats the activity by its task token. It vouches for the main thread only while that thread shows
// signs of life within `stallMs`: a process that is really hung still times out.
//
// The thread runs plain CommonJS from a string (no TypeScript loader needed in it, before or after a build).
import { Worker } from 'node:worker_threads';
import type { Context } from '@temporalio/activity';
import { temporalSecurity } from '../security/settings.ts';
import { temporalConnectionOptions } from '../security/temporal.ts';

export interface HeartbeatDetails {
  step: number;
  checkpointStep: number;
}

export interface Heartbeat {
  /** Marks the main thread alive and sets what the next heartbeats report. Cheap: call it often. */
  beat(details: HeartbeatDetails): void;
  /** Stops both heartbeats. */
  close(): Promise<void>;
}

export interface HeartbeatOptions {
  /** How often to heartbeat (a quarter of the activity's heartbeat timeout is usual). */
  intervalMs: number;
  /** The longest the main thread may be silent (one synchronous step) before the thread stops vouching. */
  stallMs: number;
}

// Shared slots: [0] time the main thread last beat (ms since epoch), [1] step, [2] checkpointStep.
const THREAD = `
const { workerData, parentPort } = require('node:worker_threads');
const { Client, Connection } = require('@temporalio/client');
const shared = new Float64Array(workerData.shared);
let stopped = false;
parentPort.on('message', (m) => { if (m === 'stop') stopped = true; });
(async () => {
  const connection = await Connection.connect(workerData.connection);
  const client = new Client({ connection, namespace: workerData.namespace });
  while (!stopped) {
    await new Promise((r) => setTimeout(r, workerData.intervalMs));
    if (stopped) break;
    if (Date.now() - shared[0] > workerData.stallMs) continue; // the main thread is hung: let it time out
    try {
      await client.activity.heartbeat(workerData.taskToken, { step: shared[1], checkpointStep: shared[2] });
    } catch (e) {
      // Cancelled, completed or timed out: the main thread's own heartbeat says so; stop vouching.
      if (/not found|cancel|completed|timed out/i.test(String(e && e.message))) break;
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
  const local = setInterval(() => ctx.heartbeat(details), opts.intervalMs);
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
  thread.on('error', () => undefined); // a thread that cannot connect leaves the in-thread heartbeat
  return {
    beat(d) {
      details = d;
      set(d);
    },
    async close() {
      clearInterval(local);
      thread.postMessage('stop');
      await thread.terminate().catch(() => undefined);
    },
  };
}
