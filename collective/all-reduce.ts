// One all-reduce as a state machine driven by messages: reduce-scatter then all-gather, chunk by chunk.
//
//   rank i sends chunk c of segment j to rank j ('rs'); rank j, once it holds all W contributions of chunk c,
//   sums them in rank order 0..W-1 (so the bits never depend on arrival order), and broadcasts the result
//   ('ag'). The all-gather of chunk c doubles as the flow-control ack: a sender keeps at most `window`
//   chunks per owner in flight, so no receiver's server-side buffer can grow until NATS cuts it off as a
//   slow consumer.
//
// Two halves of it stand alone (`mode`): 'scatter' (a reduce-scatter: rank j ends with the sum of segment
// j only; its all-gather messages carry no values and serve only as flow-control acks) and 'gather' (an
// all-gather: segment j is rank j's own data, broadcast as the all-gather phase with no reduce-scatter).
// With `segments` the caller places rank j's part of the data at segment j.
//
// Every rank derives the same chunk layout, so each knows exactly what it still lacks from whom. A peer
// silent for `retryMs` gets a resend request ('nack', request-reply): "no responders" means its
// subscriptions are gone (the process died); an answer resends what was lost. Nothing is ever summed as
// zero: the operation either completes with every contribution or fails.
import { ChunkLostError, CollectiveMismatchError, PeerLostError } from './errors.ts';
import { decodeFp16, encodeFp16 } from './fp16.ts';
import { chunkRange, layout, type Layout } from './partition.ts';

export type Wire = 'fp32' | 'fp16';
export type Phase = 'rs' | 'ag';
/** 'all': all-reduce; 'scatter': reduce-scatter (only segment `rank` of the result is the sum);
 *  'gather': all-gather (each rank contributes its own segment, every rank gets all of them). */
export type Mode = 'all' | 'scatter' | 'gather';

/** What an operation needs from its group: publishing, asking peers, time. */
export interface OpHost {
  readonly rank: number;
  readonly worldSize: number;
  readonly retryMs: number;
  readonly timeoutMs: number;
  /** Publish a chunk. to = owner (rs), or 'all' (ag broadcast); resendTo = the rank that asked for it. */
  publishChunk(
    op: AllReduceOp,
    phase: Phase,
    to: number | 'all',
    seg: number,
    chunk: number,
    payload: Uint8Array,
    resendTo?: number,
  ): void;
  /** Ask `peer` to resend what this rank lacks. */
  requestResend(
    op: AllReduceOp,
    peer: number,
    req: ResendRequest,
  ): Promise<ResendReply | 'no-responders' | 'timeout'>;
}

export interface ResendRequest {
  opIndex: number;
  from: number;
  /** Chunks of the asker's own segment it lacks from the peer (reduce-scatter). */
  rs: number[];
  /** Chunks of the peer's segment the asker lacks (all-gather). */
  ag: number[];
}

export interface ResendReply {
  state: 'active' | 'done' | 'not-started' | 'gone';
  resent: number;
  /** Peers the answering rank itself still lacks data from. */
  waitingOn: number[];
}

export interface OpSpec {
  opIndex: number;
  step: number;
  tag: string;
  wire: Wire;
  average: boolean;
  length: number;
  mode: Mode;
  /** Segment boundaries (W + 1 offsets) when not the default near-equal cut: never on the wire, every
   *  rank derives the same ones. */
  segments?: readonly number[];
}

/** Fields every message of an operation carries, checked against the local call. */
export interface ChunkMeta extends OpSpec {
  from: number;
  phase: Phase;
  seg: number;
  chunk: number;
}

export class AllReduceOp {
  readonly layout: Layout;
  readonly out: Float32Array;
  readonly done: Promise<Float32Array>;
  readonly window: number;
  private resolve!: (r: Float32Array) => void;
  private reject!: (e: Error) => void;
  private settled = false;
  readonly elemBytes: number;
  /** Contributions that complete a chunk: every rank's (reduce), or the owner's own (gather). */
  private readonly needed: number;
  /** The all-gather phase carries values (not in a reduce-scatter, where it only acknowledges). */
  private readonly gathers: boolean;

  // owner side: contributions to my segment, per chunk, per rank (undefined = not yet here)
  private readonly contrib: (Float32Array | undefined)[][];
  private readonly contribCount: Int32Array;
  private reduced = 0;
  /** Encoded all-gather payloads of my reduced chunks: kept to answer resend requests. */
  readonly agPayload: (Uint8Array | undefined)[];
  // receiver side for the other segments
  private readonly agGot: Uint8Array[];
  private readonly agCount: Int32Array;
  // sender side: next chunk to send to each owner
  private readonly rsSent: Int32Array;
  // liveness
  private readonly lastHeard: Float64Array;
  private readonly lastAsked: Float64Array;
  private readonly unresponsive = new Set<number>();
  private readonly asking = new Set<number>();
  private readonly noResponders = new Map<number, number>();
  private readonly peerWaitingOn = new Map<number, number[]>();
  private lastProgress: number;
  private readonly startedAt: number;
  bytesIn = 0;

  constructor(
    readonly spec: OpSpec,
    private readonly input: Float32Array,
    private readonly host: OpHost,
    chunkBytes: number,
    windowBytes: number,
    /** Where the result goes (default a new array); may be `input` itself (see AllReduceOptions.inPlace). */
    out?: Float32Array,
  ) {
    const W = host.worldSize;
    this.elemBytes = spec.wire === 'fp16' ? 2 : 4;
    const chunkElems = Math.max(1, Math.floor(chunkBytes / this.elemBytes));
    this.layout = layout(spec.length, W, chunkElems, spec.segments);
    this.needed = spec.mode === 'gather' ? 1 : W;
    this.gathers = spec.mode !== 'scatter';
    this.window = Math.max(1, Math.floor(windowBytes / (chunkElems * this.elemBytes * Math.max(1, W - 1))));
    this.out = out ?? new Float32Array(spec.length);
    this.done = new Promise((res, rej) => {
      this.resolve = res;
      this.reject = rej;
    });
    const me = host.rank;
    const mine = this.layout.chunks[me]!;
    this.contrib = Array.from({ length: mine }, () => new Array<Float32Array | undefined>(W));
    this.contribCount = new Int32Array(mine);
    this.agPayload = new Array<Uint8Array | undefined>(mine);
    this.agGot = this.layout.chunks.map((n) => new Uint8Array(n));
    this.agCount = new Int32Array(W);
    this.rsSent = new Int32Array(W);
    this.startedAt = this.lastProgress = performance.now();
    this.lastHeard = new Float64Array(W).fill(this.startedAt);
    this.lastAsked = new Float64Array(W).fill(this.startedAt);
  }

  get opIndex(): number {
    return this.spec.opIndex;
  }
  get isSettled(): boolean {
    return this.settled;
  }

  /** Sends the first window of chunks; completes at once when there is nothing to exchange. */
  start(): void {
    const me = this.host.rank;
    for (let c = 0; c < this.layout.chunks[me]!; c++) this.addContribution(c, me, this.ownChunk(c));
    this.pump();
    this.checkDone();
  }

  /** The values this rank contributes for chunk c of segment seg, as they travel on the wire. */
  private sendPayload(seg: number, c: number): Uint8Array {
    const [a, b] = chunkRange(this.layout, seg, c);
    const src = this.input.subarray(a, b);
    if (this.spec.wire === 'fp32') return new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
    const h = encodeFp16(src, new Uint16Array(b - a));
    return new Uint8Array(h.buffer);
  }

  /** My own contribution to my segment, rounded exactly as a peer's would be by the wire. */
  private ownChunk(c: number): Float32Array {
    const [a, b] = chunkRange(this.layout, this.host.rank, c);
    const src = this.input.subarray(a, b);
    if (this.spec.wire === 'fp32') return src;
    return decodeFp16(encodeFp16(src, new Uint16Array(b - a)), new Float32Array(b - a));
  }

  /** The values of a received chunk, written into `into`, or else a view of the message when it is
   *  4-byte aligned fp32 (the client hands each socket read its own buffer, so the view stays valid). */
  private decode(bytes: Uint8Array, n: number, into?: Float32Array): Float32Array {
    if (bytes.byteLength !== n * this.elemBytes)
      throw new RangeError(`chunk of ${bytes.byteLength} bytes for ${n} values`);
    if (!into && this.spec.wire === 'fp32' && bytes.byteOffset % 4 === 0)
      return new Float32Array(bytes.buffer, bytes.byteOffset, n);
    const f = into ?? new Float32Array(n);
    if (this.spec.wire === 'fp32') {
      new Uint8Array(f.buffer, f.byteOffset, f.byteLength).set(bytes);
    } else {
      const aligned = bytes.byteOffset % 2 === 0 ? bytes : new Uint8Array(bytes); // a copy (Buffer#slice would be a view)
      decodeFp16(new Uint16Array(aligned.buffer, aligned.byteOffset, n), f);
    }
    return f;
  }

  /** Sends reduce-scatter chunks while each owner's window has room, round-robin over owners starting
   *  after this rank (so W senders do not all hit owner 0 first). */
  private pump(): void {
    const W = this.host.worldSize;
    const me = this.host.rank;
    if (this.spec.mode === 'gather') return; // nothing to reduce: the owners broadcast their own segments
    let progressed = true;
    while (progressed && !this.settled) {
      progressed = false;
      for (let k = 1; k < W; k++) {
        const j = (me + k) % W;
        const c = this.rsSent[j]!;
        if (c < this.layout.chunks[j]! && c < this.agCount[j]! + this.window) {
          this.host.publishChunk(this, 'rs', j, j, c, this.sendPayload(j, c));
          this.rsSent[j] = c + 1;
          progressed = true;
        }
      }
    }
  }

  /** A chunk of this operation arrived (first send or resend). `transient`: `bytes` is reused after this
   *  returns, so a contribution that has to wait for others is copied. */
  onChunk(meta: ChunkMeta, bytes: Uint8Array, transient = false): void {
    if (this.settled) return;
    const mismatch = this.check(meta);
    if (mismatch) return this.fail(mismatch);
    const now = performance.now();
    this.lastHeard[meta.from] = now;
    this.noResponders.delete(meta.from);
    this.unresponsive.delete(meta.from);
    const me = this.host.rank;
    try {
      if (meta.phase === 'rs') {
        if (meta.seg !== me || meta.chunk >= this.layout.chunks[me]!)
          throw new RangeError(`reduce-scatter chunk ${meta.seg}/${meta.chunk} sent to rank ${me}`);
        if (this.contribCount[meta.chunk]! >= this.needed || this.contrib[meta.chunk]![meta.from]) return; // duplicate (a resend raced the original)
        const [a, b] = chunkRange(this.layout, me, meta.chunk);
        this.bytesIn += bytes.byteLength;
        this.lastProgress = now;
        let values = this.decode(bytes, b - a);
        if (
          transient &&
          values.buffer === bytes.buffer &&
          this.contribCount[meta.chunk]! + 1 < this.host.worldSize
        )
          values = values.slice();
        this.addContribution(meta.chunk, meta.from, values);
      } else {
        if (meta.seg !== meta.from || meta.chunk >= this.layout.chunks[meta.seg]!)
          throw new RangeError(`all-gather chunk ${meta.seg}/${meta.chunk} from rank ${meta.from}`);
        if (this.agGot[meta.seg]![meta.chunk]) return;
        const [a, b] = chunkRange(this.layout, meta.seg, meta.chunk);
        this.bytesIn += bytes.byteLength;
        this.lastProgress = now;
        if (!this.gathers) {
          if (bytes.byteLength !== 0) throw new RangeError(`reduce-scatter ack of ${bytes.byteLength} bytes`);
        } else this.decode(bytes, b - a, this.out.subarray(a, b));
        this.agGot[meta.seg]![meta.chunk] = 1;
        this.agCount[meta.seg]!++;
        this.pump();
      }
    } catch (e) {
      return this.fail(e as Error);
    }
    this.checkDone();
  }

  private check(m: ChunkMeta): Error | undefined {
    const s = this.spec;
    for (const f of ['length', 'tag', 'step', 'wire', 'average', 'mode'] as const) {
      if (m[f] !== s[f]) return new CollectiveMismatchError(f, String(s[f]), String(m[f]), m.from, s.opIndex);
    }
    return undefined;
  }

  private addContribution(c: number, from: number, values: Float32Array): void {
    const slot = this.contrib[c]!;
    slot[from] = values;
    if (++this.contribCount[c]! < this.needed) return;
    // Sum in rank order: the result is a pure function of the inputs, identical on every rerun. It is
    // written straight into its place in the output (no per-chunk buffer: fresh large allocations
    // cost more here than the sum), which fp32 then sends as is.
    const W = this.host.worldSize;
    const [a, b] = chunkRange(this.layout, this.host.rank, c);
    const acc = this.out.subarray(a, b);
    const x0 = slot[0]!;
    if (this.needed === 1) acc.set(slot[this.host.rank]!);
    else if (W === 2) {
      const x1 = slot[1]!;
      for (let k = 0; k < acc.length; k++) acc[k] = x0[k]! + x1[k]!;
    } else {
      // Every contribution of element k is read before acc[k] is written: with inPlace, this rank's own
      // contribution is acc itself. Math.fround keeps each partial sum a float32, as a Float32Array would.
      const xs = slot as Float32Array[];
      for (let k = 0; k < acc.length; k++) {
        let sum = Math.fround(x0[k]! + xs[1]![k]!);
        for (let r = 2; r < W; r++) sum = Math.fround(sum + xs[r]![k]!);
        acc[k] = sum;
      }
    }
    if (this.spec.average) for (let k = 0; k < acc.length; k++) acc[k]! /= W;
    let payload: Uint8Array;
    if (!this.gathers) payload = new Uint8Array(0);
    else if (this.spec.wire === 'fp32') {
      payload = new Uint8Array(acc.buffer, acc.byteOffset, acc.byteLength);
    } else {
      const h = encodeFp16(acc, new Uint16Array(acc.length));
      decodeFp16(h, acc); // the owner keeps exactly what the others decode
      payload = new Uint8Array(h.buffer);
    }
    this.contrib[c] = [];
    this.agPayload[c] = payload;
    this.reduced++;
    if (W > 1) this.host.publishChunk(this, 'ag', 'all', this.host.rank, c, payload);
  }

  private checkDone(): void {
    if (this.settled) return;
    const me = this.host.rank;
    if (this.reduced < this.layout.chunks[me]!) return;
    for (let j = 0; j < this.host.worldSize; j++)
      if (j !== me && this.agCount[j]! < this.layout.chunks[j]!) return;
    this.settled = true;
    this.resolve(this.out);
  }

  fail(e: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(e);
  }

  /** What this rank still lacks from `peer`; `due` limits it to what the peer can already have sent:
   *  reduce-scatter chunks inside its window (it has at most our all-gathers so far plus a window), and
   *  all-gather chunks we have contributed to. Asking for more would only fetch duplicates. */
  private missingFrom(peer: number, due = false): { rs: number[]; ag: number[] } {
    const me = this.host.rank;
    const rs: number[] = [];
    const rsLimit = due ? Math.min(this.contrib.length, this.reduced + this.window) : this.contrib.length;
    for (let c = 0; c < rsLimit; c++)
      if (this.contribCount[c]! < this.needed && !this.contrib[c]![peer]) rs.push(c);
    const ag: number[] = [];
    if (peer !== me) {
      const got = this.agGot[peer]!;
      const sent = this.spec.mode === 'gather' ? got.length : this.rsSent[peer]!;
      const agLimit = due ? Math.min(got.length, sent) : got.length;
      for (let c = 0; c < agLimit; c++) if (!got[c]) ag.push(c);
    }
    return { rs, ag };
  }

  /** Peers this rank still lacks data from. */
  waitingOn(): number[] {
    const out: number[] = [];
    for (let p = 0; p < this.host.worldSize; p++) {
      if (p === this.host.rank) continue;
      const m = this.missingFrom(p);
      if (m.rs.length || m.ag.length) out.push(p);
    }
    return out;
  }

  /** Serves a peer's resend request for this (still running) operation. */
  resend(req: ResendRequest): ResendReply {
    let resent = 0;
    const me = this.host.rank;
    for (const c of req.rs) {
      if (c < this.rsSent[req.from]! && c < this.layout.chunks[req.from]!) {
        this.host.publishChunk(this, 'rs', req.from, req.from, c, this.sendPayload(req.from, c), req.from);
        resent++;
      }
    }
    for (const c of req.ag) {
      const p = this.agPayload[c];
      if (p) {
        this.host.publishChunk(this, 'ag', req.from, me, c, p, req.from);
        resent++;
      }
    }
    return {
      state: this.settled ? 'done' : 'active',
      resent,
      waitingOn: this.settled ? [] : this.waitingOn(),
    };
  }

  /** Called periodically: asks silent peers for what is missing, and gives up after timeoutMs without
   *  progress, naming the ranks that hold it up. */
  tick(now: number): void {
    if (this.settled) return;
    const { retryMs, timeoutMs, rank: me, worldSize: W } = this.host;
    for (let p = 0; p < W; p++) {
      if (p === me) continue;
      if (this.asking.has(p) || now - this.lastHeard[p]! < retryMs || now - this.lastAsked[p]! < retryMs)
        continue;
      const missing = this.missingFrom(p, true);
      if (!missing.rs.length && !missing.ag.length) continue;
      this.lastAsked[p] = now;
      this.asking.add(p);
      void this.ask(p, missing).finally(() => this.asking.delete(p));
    }
    if (now - this.lastProgress >= timeoutMs) {
      this.fail(
        new PeerLostError(
          this.culprits(),
          this.spec.step,
          `allReduce:${this.spec.tag}`,
          `no progress for ${Math.round(now - this.lastProgress)} ms`,
          me,
        ),
      );
    }
  }

  private async ask(p: number, missing: { rs: number[]; ag: number[] }): Promise<void> {
    const reply = await this.host.requestResend(this, p, {
      opIndex: this.spec.opIndex,
      from: this.host.rank,
      ...missing,
    });
    if (this.settled) return;
    if (reply === 'no-responders') {
      // Its subscriptions are gone: the process died, or the server cut it off as a slow consumer (an
      // event loop blocked for seconds) and it has not reconnected yet. Give it a third of the timeout
      // to come back; a dead process is then reported well within the timeout.
      const first = this.noResponders.get(p);
      const now = performance.now();
      if (first === undefined) this.noResponders.set(p, now);
      else if (now - first >= this.host.timeoutMs / 3) {
        this.fail(
          new PeerLostError(
            [p],
            this.spec.step,
            `allReduce:${this.spec.tag}`,
            `no responders for ${Math.round(now - first)} ms: its subscriptions are gone (process dead, or cut off and not back)`,
            this.host.rank,
          ),
        );
      }
      return;
    }
    this.noResponders.delete(p);
    if (reply === 'timeout') {
      this.unresponsive.add(p);
      return;
    }
    this.unresponsive.delete(p);
    this.peerWaitingOn.set(p, reply.waitingOn);
    if (reply.state === 'gone') {
      const now = this.missingFrom(p); // the request may be stale: fail only for what is still missing
      if (!now.rs.length && !now.ag.length) return;
      const phase = now.rs.length ? 'reduce-scatter' : 'all-gather';
      this.fail(
        new ChunkLostError(
          p,
          this.spec.step,
          `allReduce:${this.spec.tag}`,
          phase,
          now.rs.length ? now.rs : now.ag,
        ),
      );
    }
  }

  /** The ranks to blame: silent peers first, then whom the answering peers are themselves waiting on. */
  private culprits(): number[] {
    const me = this.host.rank;
    const waiting = this.waitingOn();
    const blamed = new Set<number>();
    for (const p of waiting) if (this.unresponsive.has(p) || this.noResponders.has(p)) blamed.add(p);
    if (!blamed.size) {
      for (const p of waiting) for (const q of this.peerWaitingOn.get(p) ?? []) if (q !== me) blamed.add(q);
    }
    if (!blamed.size) for (const p of waiting) blamed.add(p);
    return [...blamed].sort((a, b) => a - b);
  }
}
