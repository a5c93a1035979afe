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
// So the worker's helper thread (heartbeat-thread.ts, one per process, connected before any activity
// starts) heartbeats the activity by its task token (the server sees a live activity), and `signal` (use it
// instead of the context's cancellation signal) ignores a local TIMED_OUT when a heartbeat from the thread,
// sent at that moment, shows the server still has it; `settle` then reports the outcome to the server by
// task token, since the core will not. Both halves are needed (test/abuse-durability.test.ts fails without
// either). The thread vouches for the activity's thread only while it shows signs of life within `stallMs`:
// a process that is really hung still times out. A cancellation the workflow asks for reaches the helper
// in its heartbeat's answer and aborts `signal`.
import type { Client } from '@temporalio/client';
import { CancelledFailure } from '@temporalio/common';
import type { Context } from '@temporalio/activity';
import type { HeartbeatThread, Vouching } from './heartbeat-thread.ts';

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

/** Where a rank's heartbeat goes besides its own context: the worker's helper thread, and the worker's
 *  client that reports an outcome the core dropped. */
export interface HeartbeatDeps {
  heartbeats: HeartbeatThread;
  client: Client;
}

export function startHeartbeat(
  ctx: Context,
  deps: HeartbeatDeps,
  opts: HeartbeatOptions,
  first: HeartbeatDetails,
): Heartbeat {
  // Slots the helper thread reads: [0] this thread last alive (ms since epoch), [1] step, [2] checkpointStep.
  const shared = new Float64Array(new SharedArrayBuffer(3 * 8));
  let details = first;
  const beat = (d: HeartbeatDetails) => {
    details = d;
    shared[0] = Date.now();
    shared[1] = d.step;
    shared[2] = d.checkpointStep;
  };
  beat(first);
  ctx.heartbeat(details);
  const local = setInterval(() => {
    shared[0] = Date.now(); // the timer fired: this thread is alive
    ctx.heartbeat(details);
  }, opts.intervalMs);
  const stop = new AbortController();
  const vouching = deps.heartbeats.register(
    {
      taskToken: ctx.info.taskToken,
      shared: shared.buffer,
      intervalMs: opts.intervalMs,
      stallMs: opts.stallMs,
    },
    (gone) => stop.abort(new CancelledFailure(gone)),
  );
  const timeouts = coverLocalTimeouts(ctx, vouching, stop, opts.log);
  return {
    beat,
    signal: stop.signal,
    async settle(outcome) {
      if (await timeouts.orphaned())
        await reportByTaskToken(deps.client, ctx.info.taskToken, outcome, opts.log);
    },
    async close() {
      clearInterval(local);
      timeouts.dispose();
      vouching.remove();
    },
  };
}

/** Follows the context's cancellation: a TIMED_OUT from the core's own timer is checked with the server
 *  (the activity carries on, orphaned, if the server still has it); any other reason aborts `stop`. */
function coverLocalTimeouts(
  ctx: Context,
  vouching: Vouching,
  stop: AbortController,
  log?: (msg: string) => void,
): { orphaned(): Promise<boolean>; dispose(): void } {
  let probing: Promise<boolean> = Promise.resolve(false);
  const onCancel = () => {
    const reason = ctx.cancellationSignal.reason;
    if (!(reason instanceof CancelledFailure && reason.message === 'TIMED_OUT')) {
      stop.abort(reason);
      return;
    }
    probing = vouching.probe().then(({ alive, name }) => {
      if (alive)
        log?.('a long step outlived the heartbeat timeout; the helper thread kept the activity alive');
      else stop.abort(new CancelledFailure(`TIMED_OUT (${name})`));
      return alive;
    });
  };
  ctx.cancellationSignal.addEventListener('abort', onCancel);
  if (ctx.cancellationSignal.aborted) onCancel();
  return {
    orphaned: () => probing,
    dispose: () => ctx.cancellationSignal.removeEventListener('abort', onCancel),
  };
}

/** Reports an activity's outcome to the server by task token (the core dropped it after timing it out). */
async function reportByTaskToken(
  client: Client,
  taskToken: Uint8Array,
  outcome: { result: unknown } | { error: unknown },
  log?: (msg: string) => void,
): Promise<void> {
  if ('result' in outcome) await client.activity.complete(taskToken, outcome.result);
  else await client.activity.fail(taskToken, outcome.error);
  log?.(`reported the outcome by task token (${'result' in outcome ? 'completed' : 'failed'})`);
}
