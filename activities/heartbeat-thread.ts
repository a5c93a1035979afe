// One helper thread per worker process that heartbeats its running activities by task token while their
// thread is busy (heartbeat.ts says why). It starts with the worker, so the Temporal client module is loaded
// and connected before any activity begins: loading it per activity left seconds without heartbeats at the
// start of each one under load. Activities register with it and leave; if the thread dies (it cannot reach
// Temporal, or crashes) it is started again and the registered activities are handed to the new one.
//
// The thread runs plain CommonJS from a string (no TypeScript loader needed in it, before or after a build).
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import type { TemporalSecurity } from '../security/settings.ts';
import { temporalConnectionOptions } from '../security/temporal.ts';

/** One activity's heartbeat as the thread sees it. `shared` holds three Float64 slots the activity's thread
 *  writes: [0] when it was last alive (ms since epoch), [1] step, [2] checkpointStep. */
export interface ThreadBeat {
  taskToken: Uint8Array;
  shared: SharedArrayBuffer;
  /** How often to heartbeat. */
  intervalMs: number;
  /** The longest the activity's thread may be silent before the helper stops vouching for it. */
  stallMs: number;
}

/** The server's answer to "is this activity still alive?" (one heartbeat sent now). */
export interface ProbeAnswer {
  alive: boolean;
  /** Why not, when not alive: the error's name, or that no helper thread runs. */
  name?: string;
}

export interface Vouching {
  /** Heartbeats once now; resolves with the server's answer. */
  probe(): Promise<ProbeAnswer>;
  /** Stops heartbeating this activity. */
  remove(): void;
}

type FromThread =
  { ready: true } | { id: number; gone: string } | { id: number; alive: boolean; name?: string };

const THREAD = `
const { workerData, parentPort } = require('node:worker_threads');
const { Client, Connection } = require(workerData.clientModule);
const beats = new Map();
let client;
const send = (b) => client.activity.heartbeat(b.taskToken, { step: b.shared[1], checkpointStep: b.shared[2] });
const schedule = (id, b) => {
  b.timer = setTimeout(async () => {
    // A thread silent for longer than stallMs is hung: stop vouching, let the activity time out.
    if (client && Date.now() - b.shared[0] <= b.stallMs) {
      try {
        await send(b);
      } catch (e) {
        const name = String(e && e.name);
        // The workflow cancelled the activity, or the server no longer has it: tell its thread, stop.
        if (/Cancelled|NotFound|Paused|Reset/.test(name) && beats.get(id) === b) {
          beats.delete(id);
          parentPort.postMessage({ id, gone: name });
          return;
        }
      }
    }
    if (beats.get(id) === b) schedule(id, b);
  }, b.intervalMs);
};
const probe = (id) => {
  const b = beats.get(id);
  if (!client || !b) return parentPort.postMessage({ id, alive: false, name: client ? 'not registered' : 'not connected' });
  send(b).then(
    () => parentPort.postMessage({ id, alive: true }),
    (e) => parentPort.postMessage({ id, alive: false, name: String(e && e.name) }),
  );
};
parentPort.on('message', (m) => {
  if (m.type === 'add') {
    const b = { ...m.beat, shared: new Float64Array(m.beat.shared) };
    beats.set(m.id, b);
    schedule(m.id, b);
  } else if (m.type === 'remove') {
    clearTimeout(beats.get(m.id)?.timer);
    beats.delete(m.id);
  } else if (m.type === 'probe') probe(m.id);
});
Connection.connect(workerData.connection).then((connection) => {
  client = new Client({ connection, namespace: workerData.namespace });
  parentPort.postMessage({ ready: true });
});
`;

/** Wait before starting a thread that died, doubling while none connects, so one that cannot does not spin. */
const RESTART_MS = 2000;
const RESTART_MAX_MS = 60_000;

// Resolved here, not in the thread: an eval'd thread resolves modules from the working directory, which
// need not hold this package's node_modules (an installed `dalle`).
const CLIENT_MODULE = createRequire(import.meta.url).resolve('@temporalio/client');

interface Registration {
  beat: ThreadBeat;
  onGone: (name: string) => void;
  probes: ((a: ProbeAnswer) => void)[];
}

export class HeartbeatThread {
  private thread: Worker | undefined;
  private readonly registered = new Map<number, Registration>();
  private nextId = 1;
  private closed = false;
  private restarts = 0;
  private failing = 0; // threads in a row that died before they connected

  private constructor(
    private readonly sec: TemporalSecurity,
    private readonly log: (msg: string) => void,
  ) {}

  /** Starts the thread: it loads the Temporal client and connects while the worker starts. */
  static start(sec: TemporalSecurity, log: (msg: string) => void = () => undefined): HeartbeatThread {
    const t = new HeartbeatThread(sec, log);
    t.spawn();
    return t;
  }

  /** How often the thread has been started again after it died. */
  get restartCount(): number {
    return this.restarts;
  }

  /** Heartbeats an activity by task token until `remove`; `onGone` hears that the server no longer has it
   *  (cancelled, not found, paused, reset). */
  register(beat: ThreadBeat, onGone: (name: string) => void): Vouching {
    const id = this.nextId++;
    const reg: Registration = { beat, onGone, probes: [] };
    this.registered.set(id, reg);
    this.thread?.postMessage({ type: 'add', id, beat });
    return {
      probe: () =>
        new Promise<ProbeAnswer>((resolve) => {
          if (!this.thread || !this.registered.has(id)) resolve({ alive: false, name: 'no helper thread' });
          else {
            reg.probes.push(resolve);
            this.thread.postMessage({ type: 'probe', id });
          }
        }),
      remove: () => {
        this.registered.delete(id);
        this.thread?.postMessage({ type: 'remove', id });
        answerProbes(reg, { alive: false, name: 'removed' });
      },
    };
  }

  /** Stops the thread for good (the worker is shutting down). */
  async close(): Promise<void> {
    this.closed = true;
    const thread = this.thread;
    this.thread = undefined;
    await thread?.terminate().catch(() => undefined);
  }

  /** Ends the running thread as a crash would (tests: the next one must take over). */
  async crashForTest(): Promise<void> {
    await this.thread?.terminate();
  }

  private spawn(): void {
    const thread = new Worker(THREAD, {
      eval: true,
      workerData: {
        clientModule: CLIENT_MODULE,
        namespace: this.sec.namespace,
        connection: temporalConnectionOptions(this.sec),
      },
    });
    thread.unref(); // never what keeps a process alive
    thread.on('message', (m: FromThread) => this.onMessage(m));
    thread.on('error', (e) => this.log(`heartbeat thread failed: ${e.message}`));
    thread.on('exit', () => this.onExit(thread));
    for (const [id, reg] of this.registered) thread.postMessage({ type: 'add', id, beat: reg.beat });
    this.thread = thread;
  }

  private onMessage(m: FromThread): void {
    if ('ready' in m) {
      this.failing = 0;
      return;
    }
    const reg = this.registered.get(m.id);
    if (!reg) return;
    if ('gone' in m) {
      this.registered.delete(m.id);
      reg.onGone(m.gone);
    } else answerProbes(reg, { alive: m.alive, ...(m.name ? { name: m.name } : {}) });
  }

  private onExit(thread: Worker): void {
    if (this.thread !== thread) return;
    this.thread = undefined;
    // A question the dead thread took with it: nobody can vouch for the activity now.
    for (const reg of this.registered.values())
      answerProbes(reg, { alive: false, name: 'helper thread died' });
    if (this.closed) return;
    const delay = Math.min(RESTART_MS * 2 ** this.failing++, RESTART_MAX_MS);
    this.log(`heartbeat thread exited; starting another in ${delay} ms`);
    setTimeout(() => {
      if (this.closed || this.thread) return;
      this.restarts++;
      this.spawn();
    }, delay).unref();
  }
}

function answerProbes(reg: Registration, answer: ProbeAnswer): void {
  for (const resolve of reg.probes.splice(0)) resolve(answer);
}
