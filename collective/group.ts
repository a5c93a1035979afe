// Process groups over core NATS: W ranks of one (runId, groupId) join behind a barrier, then run collective
// operations one at a time, in the same order on every rank. Subjects: see subjects.ts.
//
// Failure model. A rank that does not arrive, dies, or stops answering makes every surviving rank raise
// PeerLostError within `timeoutMs`: a silent peer is asked for what is missing (request-reply; "no
// responders" twice = its subscriptions are gone), an operation without progress for `timeoutMs` gives up,
// and the first rank to give up broadcasts 'abort' so the others fail at once with the same ranks. After a
// PeerLostError the group is dead: the runtime relaunches with a fresh group id (docs/operations.md).
import { randomBytes } from 'node:crypto';
import { ErrorCode, headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from 'nats';
import {
  AllReduceOp,
  type ChunkMeta,
  type OpHost,
  type Mode,
  type Phase,
  type OpSpec,
  type ResendReply,
  type ResendRequest,
  type Wire,
} from './all-reduce.ts';
import { openDataPlane, type ChunkHandler, type DataPlane, type HeaderFields } from './data-plane.ts';
import { CollectiveArgumentError, DuplicateRankError, GroupClosedError, PeerLostError } from './errors.ts';
import { decodeFp16, encodeFp16 } from './fp16.ts';
import {
  checkChunk,
  checkSender,
  EarlyChunks,
  SENDER_HEADER,
  type Rejection,
  type SubjectParts,
} from './message-check.ts';
import { validSegments } from './partition.ts';
import { Op, Subjects, checkToken } from './subjects.ts';
import { traceFields } from './trace-headers.ts';
import { traceAllReduce } from '../telemetry/spans.ts';

const META = 'dalle-meta';
const enc = new TextEncoder();
const dec = new TextDecoder();

export interface JoinOptions {
  nc: NatsConnection;
  runId: string;
  groupId: string;
  rank: number;
  worldSize: number;
  /** A peer that lets an operation make no progress for this long is lost (PeerLostError). Also the
   *  join deadline. */
  timeoutMs: number;
  /** How long join waits for every rank (default timeoutMs); ranks launched on different machines may
   *  need longer to arrive than a running operation may stall. */
  joinTimeoutMs?: number;
  /** Payload bytes per message (default: 1 MiB, capped 4 KiB below the server's max_payload). */
  chunkBytes?: number;
  /** Reduce-scatter bytes a receiver may have in flight from all senders together (default 16 MiB):
   *  bounds the server's per-connection buffer far below its 64 MiB slow-consumer limit. */
  windowBytes?: number;
  /** Ask a silent peer to resend after this long (default timeoutMs / 10, clamped to 50..1000 ms). */
  retryMs?: number;
  /** Called about once a second while join waits, with the ranks that have not arrived yet. */
  onWaiting?: (missing: number[]) => void;
  /** Fault injection for tests: return true to drop an outgoing chunk (it is never published). */
  dropChunk?: (c: DroppedChunk) => boolean;
  /** Carry the chunks on the collective's own data-plane connection beside `nc` (data-plane.ts; default
   *  true). It opens only without TLS; otherwise, or when false, chunks travel on `nc`. */
  dataPlane?: boolean;
  /** Told about every incoming message that was not believed (forged, stale, misaddressed); such a
   *  message is dropped and counted (`counters().rejected`), never used. */
  onRejected?: (r: Rejection) => void;
}

export interface DroppedChunk {
  opIndex: number;
  tag: string;
  phase: Phase;
  to: number | 'all';
  seg: number;
  chunk: number;
  resend: boolean;
}

export interface AllReduceOptions {
  /** Training step (goes into subjects and errors). */
  step: number;
  /** Names this all-reduce within the step (subject-safe token), e.g. 'grads', 'p', 'q'. Default 'ar'. */
  tag?: string;
  /** Divide the sum by worldSize (default false: sum). */
  average?: boolean;
  /** fp16 halves the bytes; the caller scales values into fp16 range. Default fp32. */
  wire?: Wire;
  /** Write the result into `data` and return it, instead of a new array: a buffer the caller no longer
   *  needs saves allocating (and first-touching) one as large as the message. Default false. */
  inPlace?: boolean;
  /** 'scatter': a reduce-scatter, only segment `rank` of the result is the sum (the rest is undefined);
   *  'gather': an all-gather, each rank's segment of `data` is its own part and every rank gets all of
   *  them (no sum: `average` must be off). Default 'all'. */
  mode?: Mode;
  /** The segments' boundaries, W + 1 offsets from 0 to the length (segment j: rank j's); the same on
   *  every rank. Default W near-equal segments. */
  segments?: readonly number[];
}

/** Cumulative counters of one group, for metrics and logs. */
export interface GroupCounters {
  ops: number;
  /** Payload bytes and messages this rank published (first sends and resends). */
  bytesOut: number;
  msgsOut: number;
  /** Payload bytes of chunks this rank used. */
  bytesIn: number;
  /** Chunks this rank resent because a peer asked. */
  resent: number;
  /** Resend requests this rank sent. */
  resendRequests: number;
  /** Chunks dropped by fault injection. */
  dropped: number;
  /** Incoming messages not believed (wrong sender token, operation, step or subject): dropped. */
  rejected: number;
}

export interface Group {
  readonly rank: number;
  readonly worldSize: number;
  readonly runId: string;
  readonly groupId: string;
  /** Sum (or mean) of `data` over all ranks, bit-identical on every rank and every rerun. Every rank must
   *  call it with the same length, tag, step and wire, in the same order. `data` is not modified (unless
   *  `inPlace`), but must not change until the promise settles. Throws PeerLostError,
   *  CollectiveMismatchError, ChunkLostError, GroupClosedError. */
  allReduce(data: Float32Array, opts: AllReduceOptions): Promise<Float32Array>;
  /** Shorthand: the fp32 sum, `allReduce(data, { step, tag })`. */
  allReduce(data: Float32Array, step: number, tag?: string): Promise<Float32Array>;
  /** Returns once every rank has reached the barrier of this step. */
  barrier(step: number): Promise<void>;
  /** A snapshot of the counters. */
  counters(): GroupCounters;
  /** Leaves the group: announces it, waits (at most timeoutMs) for the peers to finish the last
   *  operation so that they can still ask for resends, then unsubscribes. An operation still running
   *  rejects at once with GroupClosedError (and the peers waiting in it with PeerLostError): closing is
   *  how a cancelled rank stops waiting. Idempotent. */
  close(): Promise<void>;
}

/** Joins the group and returns once all `worldSize` ranks are there. Throws PeerLostError naming the
 *  ranks that did not arrive within timeoutMs, DuplicateRankError, CollectiveArgumentError. */
export async function joinGroup(opts: JoinOptions): Promise<Group> {
  const g = new NatsGroup(opts);
  await g.join();
  return g;
}

/** Counters of a group that has sent and received nothing yet. */
export function zeroCounters(): GroupCounters {
  return {
    ops: 0,
    bytesOut: 0,
    msgsOut: 0,
    bytesIn: 0,
    resent: 0,
    resendRequests: 0,
    dropped: 0,
    rejected: 0,
  };
}

/** A group of one rank that needs no server: allReduce returns a copy (rounded as the wire would round
 *  it). For single-process runs and for measuring compression math alone. */
export function soloGroup(runId = 'solo', groupId = 'solo'): Group {
  checkToken('runId', runId);
  checkToken('groupId', groupId);
  const stats = zeroCounters();
  let closed = false;
  const allReduce = (data: Float32Array, stepOrOpts: number | AllReduceOptions): Promise<Float32Array> => {
    if (closed) return Promise.reject(new GroupClosedError(groupId, 0));
    if (!(data instanceof Float32Array))
      return Promise.reject(new CollectiveArgumentError('data', data, 'must be a Float32Array'));
    const wire = typeof stepOrOpts === 'number' ? 'fp32' : (stepOrOpts.wire ?? 'fp32');
    const inPlace = typeof stepOrOpts !== 'number' && (stepOrOpts.inPlace ?? false);
    stats.ops++;
    return Promise.resolve(solo(data, wire, inPlace));
  };
  return {
    rank: 0,
    worldSize: 1,
    runId,
    groupId,
    allReduce,
    barrier: async () => undefined,
    counters: () => ({ ...stats }),
    close: async () => {
      closed = true;
    },
  };
}

interface Hello {
  instance: string;
  worldSize: number;
  seen: number[];
}

class NatsGroup implements Group, OpHost {
  readonly rank: number;
  readonly worldSize: number;
  readonly runId: string;
  readonly groupId: string;
  readonly timeoutMs: number;
  readonly retryMs: number;
  private readonly joinTimeoutMs: number;
  private readonly nc: NatsConnection;
  private readonly subjects: Subjects;
  private readonly chunkBytes: number;
  private readonly windowBytes: number;
  private readonly dropChunk?: (c: DroppedChunk) => boolean;
  private readonly instance = randomBytes(8).toString('hex');
  private readonly subs: Subscription[] = [];
  private readonly peers = new Map<number, string>(); // rank → instance
  private joinWaiter?: { resolve: () => void; reject: (e: Error) => void };
  private nextOp = 0;
  private current?: AllReduceOp;
  /** Chunks of the operation this rank has not started yet (a fast peer may run one op ahead); bounded. */
  private readonly early: EarlyChunks;
  /** Step of the last operation started (-1: none), to judge early chunks. */
  private lastStep = -1;
  private readonly onRejected?: (r: Rejection) => void;
  private readonly onWaiting?: (missing: number[]) => void;
  /** The last completed operation's all-gather payloads, kept until the next one completes (by then
   *  every peer has finished it, so nobody can ask for them any more). */
  private retained?: { spec: OpSpec; agPayload: (Uint8Array | undefined)[] };
  private readonly byes = new Map<number, number>(); // rank → last op index it ran
  private failure?: Error;
  /** The PeerLostError that came from a peer's abort (not re-broadcast). */
  private abortedBy?: PeerLostError;
  private closing = false;
  /** Index of the last operation this rank completed (-1: none). */
  private lastCompleted = -1;
  private timer?: NodeJS.Timeout;
  private queue: Promise<unknown> = Promise.resolve();
  private traceNow: [string, string][] = [];
  private readonly stats: GroupCounters = zeroCounters();
  private readonly useDataPlane: boolean;
  /** The chunks' connection when one opened (data-plane.ts); undefined: chunks go over nc. */
  private dp?: DataPlane;
  private readonly chunkSubs: { pattern: string; sid?: number; sub?: Subscription }[] = [];

  constructor(o: JoinOptions) {
    if (!o || typeof o !== 'object') throw new CollectiveArgumentError('options', o, 'must be an object');
    if (!o.nc || typeof o.nc.publish !== 'function')
      throw new CollectiveArgumentError('nc', o.nc, 'must be a connected NatsConnection');
    if (o.nc.isClosed()) throw new CollectiveArgumentError('nc', 'closed', 'is closed');
    if (!Number.isInteger(o.worldSize) || o.worldSize < 1)
      throw new CollectiveArgumentError('worldSize', o.worldSize, 'must be an integer ≥ 1');
    if (!Number.isInteger(o.rank) || o.rank < 0 || o.rank >= o.worldSize)
      throw new CollectiveArgumentError('rank', o.rank, `must be an integer in [0, ${o.worldSize})`);
    if (!(typeof o.timeoutMs === 'number' && o.timeoutMs > 0 && Number.isFinite(o.timeoutMs)))
      throw new CollectiveArgumentError(
        'timeoutMs',
        o.timeoutMs,
        'must be a positive number of milliseconds',
      );
    this.subjects = new Subjects(o.runId, o.groupId);
    this.nc = o.nc;
    this.rank = o.rank;
    this.worldSize = o.worldSize;
    this.runId = o.runId;
    this.groupId = o.groupId;
    this.timeoutMs = o.timeoutMs;
    this.joinTimeoutMs = o.joinTimeoutMs ?? o.timeoutMs;
    if (!(this.joinTimeoutMs > 0 && Number.isFinite(this.joinTimeoutMs)))
      throw new CollectiveArgumentError(
        'joinTimeoutMs',
        o.joinTimeoutMs,
        'must be a positive number of milliseconds',
      );
    this.retryMs = o.retryMs ?? Math.min(1000, Math.max(50, o.timeoutMs / 10));
    if (!(this.retryMs > 0))
      throw new CollectiveArgumentError('retryMs', o.retryMs, 'must be a positive number of milliseconds');
    const maxPayload = o.nc.info?.max_payload ?? 1 << 20;
    const limit = maxPayload - 4096; // headroom for headers, which count against max_payload
    const chunk = o.chunkBytes ?? Math.min(1 << 20, limit);
    if (!Number.isInteger(chunk) || chunk < 8 || chunk > limit) {
      throw new CollectiveArgumentError(
        'chunkBytes',
        o.chunkBytes,
        `must be an integer in [8, ${limit}] (server max_payload ${maxPayload} minus 4 KiB for headers)`,
      );
    }
    this.chunkBytes = chunk - (chunk % 4);
    this.windowBytes = o.windowBytes ?? 16 << 20;
    if (!(this.windowBytes > 0))
      throw new CollectiveArgumentError('windowBytes', o.windowBytes, 'must be positive');
    this.dropChunk = o.dropChunk;
    this.useDataPlane = o.dataPlane ?? true;
    this.onRejected = o.onRejected;
    this.onWaiting = o.onWaiting;
    // A peer one operation ahead has at most a window of reduce-scatter chunks in flight to us (plus
    // resends of the same chunks, which are deduplicated): twice that is a flood, not a fast peer.
    this.early = new EarlyChunks(
      2 * (this.windowBytes + this.chunkBytes),
      2 * (Math.ceil(this.windowBytes / this.chunkBytes) + this.worldSize),
    );
  }

  /** Headers every message of this rank carries: its instance token (message-check.ts). */
  private headers(): ReturnType<typeof natsHeaders> {
    const h = natsHeaders();
    h.set(SENDER_HEADER, this.instance);
    return h;
  }

  private reject(subject: string, reason: string, claimed?: number): void {
    this.stats.rejected++;
    this.onRejected?.({ subject, reason, claimed });
  }

  /** The op, step and rank tokens of a subject of this group (undefined: not one of ours). */
  private subjectParts(subject: string): SubjectParts | undefined {
    const prefix = `${this.subjects.prefix}.`;
    if (!subject.startsWith(prefix)) return undefined;
    const [op, step, rank, ...rest] = subject.slice(prefix.length).split('.');
    const n = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v) ? Number(v) : NaN);
    if (rest.length || !op || !Number.isInteger(n(step)) || !Number.isInteger(n(rank))) return undefined;
    return { op, step: n(step), rank: n(rank) };
  }

  // ---- chunk transport: the data plane when it is open, else nc --------------------------------------

  private readonly chunkHandler: ChunkHandler = (subject, header, data, transient) =>
    this.guard(() => this.onChunkMsg(subject, header, data, transient));

  private subscribeChunks(pattern: string): void {
    const entry: (typeof this.chunkSubs)[number] = { pattern };
    this.chunkSubs.push(entry);
    this.attachChunkSub(entry);
  }

  private attachChunkSub(entry: (typeof this.chunkSubs)[number]): void {
    if (this.dp) entry.sid = this.dp.subscribe(entry.pattern, this.chunkHandler);
    else
      entry.sub = this.nc.subscribe(entry.pattern, {
        callback: (err, m) => !err && this.chunkHandler(m.subject, (k) => m.headers?.get(k), m.data, false),
      });
  }

  /** The data plane's socket went away: chunks move to nc for the rest of the group's life; what was in
   *  flight is recovered by the resend requests, as any lost chunk is. */
  private dataPlaneLost(): void {
    this.dp = undefined;
    if (this.closing) return;
    for (const e of this.chunkSubs) this.attachChunkSub(e);
  }

  private publishChunkMsg(subject: string, fields: HeaderFields, payload: Uint8Array): void {
    if (this.dp) return this.dp.publish(subject, fields, payload);
    const h = natsHeaders();
    for (const [k, v] of fields) h.set(k, v);
    this.nc.publish(subject, payload, { headers: h });
  }

  // ---- join ------------------------------------------------------------------------------------------

  async join(): Promise<void> {
    const s = this.subjects;
    const me = this.rank;
    const sub = (subject: string, handler: (m: Msg) => void) => {
      this.subs.push(
        this.nc.subscribe(subject, { callback: (err, m) => !err && this.guard(() => handler(m)) }),
      );
    };
    if (this.useDataPlane && this.worldSize > 1) {
      this.dp = await openDataPlane(this.nc, `dalle-collective ${this.groupId} rank ${me}`);
      if (this.dp) this.dp.onClose = () => this.guard(() => this.dataPlaneLost());
    }
    this.subscribeChunks(s.pattern(Op.reduceScatter, me));
    this.subscribeChunks(s.pattern(Op.resend, me));
    for (let p = 0; p < this.worldSize; p++) if (p !== me) this.subscribeChunks(s.pattern(Op.allGather, p));
    sub(s.pattern(Op.nack, me), (m) => this.onResendRequest(m));
    sub(s.pattern(Op.join, '*'), (m) => this.onHello(m));
    sub(s.pattern(Op.bye, '*'), (m) => this.onBye(m));
    sub(s.pattern(Op.abort, '*'), (m) => this.onAbort(m));
    // the server has our subscriptions before anyone can hear of us (bounded by the operation timeout: a
    // server that is down and reconnecting never answers the flush, and waiting for peers is not that)
    try {
      await within(this.nc.flush(), this.timeoutMs, 'flush');
      if (this.dp) await within(this.dp.flush(), this.timeoutMs, 'flush');
    } catch (e) {
      await this.shutdown(e as Error);
      throw new PeerLostError(
        this.missingPeers(),
        null,
        'join',
        `no answer from the NATS server within ${this.timeoutMs} ms`,
        this.rank,
      );
    }
    if (this.worldSize === 1) return;
    const t0 = performance.now();
    const done = new Promise<void>((resolve, reject) => (this.joinWaiter = { resolve, reject }));
    if (this.failure) this.joinWaiter?.reject(this.failure);
    if (this.peers.size === this.worldSize - 1) this.joinWaiter?.resolve(); // all heard while subscribing
    this.sayHello();
    let lastHello = performance.now();
    let lastWaiting = t0;
    this.timer = setInterval(() => {
      const now = performance.now();
      if (this.onWaiting && now - lastWaiting >= 1000) {
        lastWaiting = now;
        this.guard(() => this.onWaiting!(this.missingPeers()));
      }
      if (now - t0 >= this.joinTimeoutMs) {
        const missing = this.missingPeers();
        this.joinWaiter?.reject(
          new PeerLostError(missing, null, 'join', `did not arrive within ${this.joinTimeoutMs} ms`, me),
        );
      } else if (now - lastHello >= 100) {
        this.sayHello();
        lastHello = now;
      }
    }, 25);
    try {
      await done;
    } catch (e) {
      await this.shutdown(e as Error);
      throw e;
    } finally {
      clearInterval(this.timer);
      this.timer = undefined;
      this.joinWaiter = undefined;
    }
  }

  private missingPeers(): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.worldSize; p++) if (p !== this.rank && !this.peers.has(p)) out.push(p);
    return out;
  }

  private sayHello(): void {
    const hello: Hello = { instance: this.instance, worldSize: this.worldSize, seen: [...this.peers.keys()] };
    this.nc.publish(this.subjects.of(Op.join, 0, this.rank), enc.encode(JSON.stringify(hello)), {
      headers: this.headers(),
    });
  }

  private onHello(m: Msg): void {
    const from = senderOf(m.subject);
    const h = parseJson<Hello>(m.data);
    if (!h || typeof h.instance !== 'string' || !Array.isArray(h.seen))
      return this.reject(m.subject, 'malformed join announcement', from);
    if (from === this.rank) {
      if (h.instance !== this.instance) {
        // Once more before failing: the other instance may have subscribed after our last hello, and it
        // must fail for the same reason rather than wait out the join timeout.
        if (!this.failure) this.sayHello();
        this.failGroup(new DuplicateRankError(this.rank, this.groupId));
      }
      return;
    }
    if (from < 0 || from >= this.worldSize)
      return this.failGroup(
        new CollectiveArgumentError('rank', from, `of a peer is outside [0, ${this.worldSize})`),
      );
    if (h.worldSize !== this.worldSize) {
      return this.failGroup(
        new CollectiveArgumentError(
          'worldSize',
          this.worldSize,
          `differs from rank ${from}'s (${h.worldSize}); every rank of a group must agree`,
        ),
      );
    }
    const known = this.peers.get(from);
    if (known && known !== h.instance) return this.failGroup(new DuplicateRankError(from, this.groupId));
    this.peers.set(from, h.instance);
    // A peer that has not heard of me subscribed after my last hello: answer it.
    if (!h.seen.includes(this.rank)) this.sayHello();
    if (this.joinWaiter && this.peers.size === this.worldSize - 1) this.joinWaiter.resolve();
  }

  // ---- operations ------------------------------------------------------------------------------------

  allReduce(
    data: Float32Array,
    stepOrOpts: number | AllReduceOptions,
    tagArg?: string,
  ): Promise<Float32Array> {
    const opts: AllReduceOptions =
      typeof stepOrOpts === 'number' ? { step: stepOrOpts, tag: tagArg } : stepOrOpts;
    if (!(data instanceof Float32Array))
      return Promise.reject(new CollectiveArgumentError('data', data, 'must be a Float32Array'));
    if (!opts || !Number.isInteger(opts.step) || opts.step < 0)
      return Promise.reject(new CollectiveArgumentError('step', opts?.step, 'must be an integer ≥ 0'));
    const tag = opts.tag ?? 'ar';
    try {
      checkToken('tag', tag);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const wire = opts.wire ?? 'fp32';
    if (wire !== 'fp32' && wire !== 'fp16')
      return Promise.reject(new CollectiveArgumentError('wire', wire, "must be 'fp32' or 'fp16'"));
    const mode = opts.mode ?? 'all';
    if (!['all', 'scatter', 'gather'].includes(mode))
      return Promise.reject(
        new CollectiveArgumentError('mode', mode, "must be 'all', 'scatter' or 'gather'"),
      );
    if (mode === 'gather' && opts.average)
      return Promise.reject(new CollectiveArgumentError('average', true, 'an all-gather sums nothing'));
    if (opts.segments && !validSegments(opts.segments, data.length, this.worldSize))
      return Promise.reject(
        new CollectiveArgumentError(
          'segments',
          opts.segments,
          `must cut ${data.length} into ${this.worldSize}`,
        ),
      );
    const run = () =>
      this.runAllReduce(data, {
        step: opts.step,
        tag,
        wire,
        average: opts.average ?? false,
        inPlace: opts.inPlace ?? false,
        mode,
        ...(opts.segments ? { segments: opts.segments } : {}),
      });
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  async barrier(step: number): Promise<void> {
    // one element per rank: every rank's result depends on every rank's contribution
    await this.allReduce(new Float32Array(this.worldSize), { step, tag: 'barrier' });
  }

  private async runAllReduce(data: Float32Array, o: RunOptions): Promise<Float32Array> {
    if (this.failure || this.closing) throw this.failure ?? new GroupClosedError(this.groupId, this.rank);
    const opIndex = this.nextOp++;
    this.stats.ops++;
    // One span per all-reduce per rank (telemetry/spans.ts: step, W, bytes raw/sent, chunks) and a sample of
    // the all-reduce seconds histogram; the chunks' traceparent headers point at this span.
    const info = {
      runId: this.runId,
      groupId: this.groupId,
      step: o.step,
      rank: this.rank,
      worldSize: this.worldSize,
      tag: o.tag,
      wire: o.wire,
      bytesRaw: data.byteLength,
    };
    return traceAllReduce(info, async (s) => {
      const before = { bytes: this.stats.bytesOut, msgs: this.stats.msgsOut };
      try {
        return this.worldSize === 1 ? solo(data, o.wire, o.inPlace) : await this.exchange(opIndex, data, o);
      } finally {
        s.setResult({
          bytesSent: this.stats.bytesOut - before.bytes,
          chunks: this.stats.msgsOut - before.msgs,
        });
      }
    });
  }

  private async exchange(opIndex: number, data: Float32Array, o: RunOptions): Promise<Float32Array> {
    this.traceNow = traceFields();
    const { inPlace, ...spec } = o;
    this.lastStep = o.step;
    const op = new AllReduceOp(
      { opIndex, length: data.length, ...spec },
      data,
      this,
      this.chunkBytes,
      this.windowBytes,
      inPlace ? data : undefined,
    );
    this.current = op;
    for (const [p, last] of this.byes) {
      if (last < opIndex)
        op.fail(new PeerLostError([p], o.step, `allReduce:${o.tag}`, 'left the group', this.rank));
    }
    this.timer = setInterval(
      () => this.guard(() => op.tick(performance.now())),
      Math.max(10, Math.min(this.retryMs, this.timeoutMs) / 4),
    );
    try {
      op.start();
      for (const e of this.early.take(opIndex)) op.onChunk(e.meta, e.data);
      const out = await op.done;
      // the caller may change the result (and an in-place input) once we return: the socket must have it
      await this.dp?.drained();
      this.lastCompleted = opIndex;
      this.retained = { spec: op.spec, agPayload: this.retain(op.agPayload) };
      this.stats.bytesIn += op.bytesIn;
      return out;
    } catch (e) {
      if (e instanceof PeerLostError && e !== this.abortedBy) this.broadcastAbort(e);
      this.failure ??= e as Error;
      throw e;
    } finally {
      clearInterval(this.timer);
      this.timer = undefined;
      this.current = undefined;
    }
  }

  /** The finished operation's all-gather payloads, kept for late resend requests. fp32 payloads are views
   *  of the result, which belongs to the caller now: copied into a buffer this group reuses. */
  private retain(payloads: (Uint8Array | undefined)[]): (Uint8Array | undefined)[] {
    const bytes = payloads.reduce((s, p) => s + (p?.byteLength ?? 0), 0);
    if (this.retainBuf.byteLength < bytes) this.retainBuf = new Uint8Array(bytes);
    let at = 0;
    return payloads.map((p) => {
      if (!p) return undefined;
      const copy = this.retainBuf.subarray(at, at + p.byteLength);
      copy.set(p);
      at += p.byteLength;
      return copy;
    });
  }
  private retainBuf = new Uint8Array(0);

  // ---- OpHost ----------------------------------------------------------------------------------------

  publishChunk(
    op: AllReduceOp,
    phase: Phase,
    to: number | 'all',
    seg: number,
    chunk: number,
    payload: Uint8Array,
    resendTo?: number,
  ): void {
    const s = op.spec;
    if (
      this.dropChunk?.({
        opIndex: s.opIndex,
        tag: s.tag,
        phase,
        to,
        seg,
        chunk,
        resend: resendTo !== undefined,
      })
    ) {
      this.stats.dropped++;
      return;
    }
    const meta = metaOf(s, this.rank, phase, seg, chunk);
    const fields: [string, string][] = [[SENDER_HEADER, this.instance], [META, meta], ...this.traceNow];
    const subject =
      resendTo !== undefined
        ? this.subjects.of(Op.resend, s.step, resendTo)
        : phase === 'rs'
          ? this.subjects.of(Op.reduceScatter, s.step, to as number)
          : this.subjects.of(Op.allGather, s.step, this.rank);
    this.publishChunkMsg(subject, fields, payload);
    this.stats.bytesOut += payload.byteLength;
    this.stats.msgsOut++;
    if (resendTo !== undefined) this.stats.resent++;
  }

  async requestResend(
    op: AllReduceOp,
    peer: number,
    req: ResendRequest,
  ): Promise<ResendReply | 'no-responders' | 'timeout'> {
    this.stats.resendRequests++;
    try {
      const h = this.headers();
      for (const [k, v] of this.traceNow) h.set(k, v);
      const m = await this.nc.request(
        this.subjects.of(Op.nack, op.spec.step, peer),
        enc.encode(JSON.stringify(req)),
        {
          // a live peer busy with a big chunk answers late; only a dead one gets "no responders"
          timeout: Math.max(this.retryMs, Math.min(this.timeoutMs / 4, 2000)),
          headers: h,
        },
      );
      return JSON.parse(dec.decode(m.data)) as ResendReply;
    } catch (e) {
      if ((e as { code?: string }).code === ErrorCode.NoResponders) return 'no-responders';
      return 'timeout';
    }
  }

  // ---- incoming --------------------------------------------------------------------------------------

  /** A chunk message; `transient`: `data` is reused after this returns (data-plane.ts). */
  private onChunkMsg(
    subject: string,
    header: (key: string) => string | undefined,
    data: Uint8Array,
    transient: boolean,
  ): void {
    const meta = parseMeta(header(META));
    const parts = this.subjectParts(subject);
    if (!meta || !parts) return this.reject(subject, 'not a chunk of this group (header or subject)');
    const cur = this.current;
    // A late duplicate of a finished operation (a resend that raced the original) is harmless: drop it.
    if (meta.opIndex < this.nextOp && meta.opIndex !== cur?.opIndex && meta.opIndex <= this.lastCompleted)
      return;
    const verdict = checkChunk(
      meta,
      header(SENDER_HEADER) || undefined,
      parts,
      { rank: this.rank, worldSize: this.worldSize, peers: this.peers },
      {
        current: cur ? { opIndex: cur.opIndex, step: cur.spec.step } : undefined,
        nextOp: this.nextOp,
        lastStep: this.lastStep,
      },
    );
    if (typeof verdict === 'object') return this.reject(subject, verdict.reject, meta.from);
    if (verdict === 'current') return cur!.onChunk(meta, data, transient);
    // a peer one operation ahead; a flood throws (the guard fails the group)
    this.early.add(meta, transient ? data.slice() : data);
  }

  /** The rank a control message (resend request, bye, abort) says it is from, if its token proves it. */
  private trustedSender(m: Msg, from: number): boolean {
    const why = checkSender(from, m.headers?.get(SENDER_HEADER) || undefined, {
      rank: this.rank,
      worldSize: this.worldSize,
      peers: this.peers,
    });
    if (why) this.reject(m.subject, why, from);
    return !why;
  }

  private onResendRequest(m: Msg): void {
    const req = parseJson<ResendRequest>(m.data);
    if (!req || !Array.isArray(req.rs) || !Array.isArray(req.ag) || !Number.isInteger(req.opIndex))
      return this.reject(m.subject, 'malformed resend request');
    if (!this.trustedSender(m, req.from)) return;
    let reply: ResendReply;
    const cur = this.current;
    if (cur && cur.opIndex === req.opIndex) {
      reply = cur.resend(req);
    } else if (req.opIndex >= this.nextOp || (cur && req.opIndex > cur.opIndex)) {
      reply = { state: 'not-started', resent: 0, waitingOn: [] };
    } else if (this.retained?.spec.opIndex === req.opIndex) {
      // Finished here, so the asker already holds every reduce-scatter chunk from us (it could not have
      // sent us its all-gather otherwise): any rs in the request is stale. Serve the all-gather.
      let resent = 0;
      for (const c of req.ag) {
        const p = this.retained.agPayload[c];
        if (!p) continue;
        this.resendRetained(this.retained.spec, req.from, c, p);
        resent++;
      }
      reply = { state: 'done', resent, waitingOn: [] };
    } else {
      reply = { state: 'gone', resent: 0, waitingOn: [] };
    }
    m.respond(enc.encode(JSON.stringify(reply)));
  }

  private resendRetained(spec: OpSpec, to: number, c: number, payload: Uint8Array): void {
    const meta = metaOf(spec, this.rank, 'ag', this.rank, c);
    // a copy: the retained buffer is reused when the next operation completes, the socket may still hold it
    this.publishChunkMsg(
      this.subjects.of(Op.resend, spec.step, to),
      [
        [SENDER_HEADER, this.instance],
        [META, meta],
      ],
      payload.slice(),
    );
    this.stats.bytesOut += payload.byteLength;
    this.stats.msgsOut++;
    this.stats.resent++;
  }

  private onBye(m: Msg): void {
    const from = senderOf(m.subject);
    if (from === this.rank || from < 0) return;
    if (!this.trustedSender(m, from)) return;
    const lastOp = parseJson<{ lastOp: number }>(m.data)?.lastOp;
    if (!Number.isInteger(lastOp)) return this.reject(m.subject, 'malformed bye', from);
    this.byes.set(from, lastOp!);
    const cur = this.current;
    if (cur && cur.opIndex > lastOp!)
      cur.fail(
        new PeerLostError([from], cur.spec.step, `allReduce:${cur.spec.tag}`, 'left the group', this.rank),
      );
    this.byeWaiter?.();
  }
  private byeWaiter?: () => void;

  private onAbort(m: Msg): void {
    const from = senderOf(m.subject);
    if (from === this.rank || from < 0) return;
    if (!this.trustedSender(m, from)) return;
    const a = parseJson<{ ranks: number[]; step: number | null; op: string; reason: string }>(m.data);
    if (!a || !Array.isArray(a.ranks)) return this.reject(m.subject, 'malformed abort', from);
    const e = new PeerLostError(
      a.ranks,
      a.step,
      a.op,
      `rank ${from} gave up on them (${a.reason})`,
      this.rank,
    );
    this.abortedBy ??= e;
    this.failGroup(e);
  }

  private broadcastAbort(e: PeerLostError): void {
    if (this.nc.isClosed()) return;
    const body = { ranks: e.ranks, step: e.step, op: e.op, reason: e.reason };
    this.nc.publish(this.subjects.of(Op.abort, e.step ?? 0, this.rank), enc.encode(JSON.stringify(body)), {
      headers: this.headers(),
    });
  }

  /** Fails whatever is running and every later call. */
  private failGroup(e: Error): void {
    this.failure ??= e;
    this.current?.fail(e);
    this.joinWaiter?.reject(e);
  }

  /** Runs a message handler; a handler that throws fails the group instead of crashing the process. */
  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      this.failGroup(e as Error);
    }
  }

  counters(): GroupCounters {
    return { ...this.stats };
  }

  close(): Promise<void> {
    this.closed ??= this.leave();
    return this.closed;
  }
  private closed?: Promise<void>;

  private async leave(): Promise<void> {
    this.closing = true;
    // an operation still running is abandoned: it rejects now, and so does everything queued behind it
    const cur = this.current;
    if (cur && !cur.isSettled) cur.fail(new GroupClosedError(this.groupId, this.rank));
    await this.queue;
    if (this.worldSize > 1 && !this.nc.isClosed()) {
      // peers waiting for us (in an operation we did not finish, or in their own close) learn at once
      // that we are gone
      this.nc.publish(
        this.subjects.of(Op.bye, 0, this.rank),
        enc.encode(JSON.stringify({ lastOp: this.lastCompleted })),
        { headers: this.headers() },
      );
    }
    if (!this.failure && this.worldSize > 1 && !this.nc.isClosed()) {
      // Serve resend requests until every peer has finished too (or timeoutMs).
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, this.timeoutMs);
        const check = () => {
          if (this.byes.size >= this.worldSize - 1 || this.failure) {
            clearTimeout(t);
            resolve();
          }
        };
        this.byeWaiter = check;
        check();
      });
    }
    await this.shutdown();
  }

  private async shutdown(cause?: Error): Promise<void> {
    this.failure ??= cause ?? new GroupClosedError(this.groupId, this.rank);
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    for (const s of this.subs.splice(0)) s.unsubscribe();
    for (const e of this.chunkSubs.splice(0)) {
      e.sub?.unsubscribe();
      if (e.sid !== undefined) this.dp?.unsubscribe(e.sid);
    }
    if (this.dp) {
      await within(this.dp.flush(), this.timeoutMs, 'flush').catch(() => undefined);
      this.dp.close();
      this.dp = undefined;
    }
    this.early.clear();
    this.retained = undefined;
    if (!this.nc.isClosed()) await within(this.nc.flush(), this.timeoutMs, 'flush').catch(() => undefined);
  }
}

/** `p`, or a rejection after `ms`: nothing the collective awaits may hang. */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>(
    (_, reject) => (t = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms)),
  );
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

/** worldSize 1: nothing to exchange, but the result is still rounded as the wire would round it. */
function solo(data: Float32Array, wire: Wire, inPlace = false): Float32Array {
  const out = inPlace ? data : Float32Array.from(data);
  if (wire === 'fp16') decodeFp16(encodeFp16(out, new Uint16Array(out.length)), out);
  return out;
}

/** A JSON control message, or undefined when it is not one (never a crash: anyone may publish junk). */
function parseJson<T>(data: Uint8Array): T | undefined {
  try {
    const v = JSON.parse(dec.decode(data)) as unknown;
    return v && typeof v === 'object' ? (v as T) : undefined;
  } catch {
    return undefined;
  }
}

function senderOf(subject: string): number {
  const r = Number(subject.slice(subject.lastIndexOf('.') + 1));
  return Number.isInteger(r) ? r : -1;
}

type RunOptions = Omit<OpSpec, 'opIndex' | 'length'> & { inPlace: boolean };

/** The header every chunk carries: the operation as its sender called it (checked by the receiver). */
function metaOf(s: OpSpec, from: number, phase: Phase, seg: number, chunk: number): string {
  return `${s.opIndex} ${from} ${phase} ${seg} ${chunk} ${s.length} ${s.wire} ${s.average ? 1 : 0} ${s.step} ${s.tag} ${s.mode}`;
}

function parseMeta(v: string | undefined): ChunkMeta | undefined {
  if (!v) return undefined;
  const f = v.split(' ');
  if (f.length !== 11) return undefined;
  const n = (i: number) => Number(f[i]);
  return {
    opIndex: n(0),
    from: n(1),
    phase: f[2] as Phase,
    seg: n(3),
    chunk: n(4),
    length: n(5),
    wire: f[6] as Wire,
    average: f[7] === '1',
    step: n(8),
    tag: f[9]!,
    mode: f[10] as Mode,
  };
}
