// Which incoming messages a rank may believe. Kept apart from the wire format (group.ts encodes and
// decodes headers; this file judges a decoded one), so a faster wire changes neither.
//
//   sender   every message carries its sender's instance token (`dalle-sender`), a random value each rank
//            announces when it joins; a message whose token is not the one the claimed rank joined with
//            is not from that rank. On a secured cluster only the run's own ranks can read the join
//            subject (per-run NATS permissions), so nobody else can learn a token to forge with.
//   subject  the subject must agree with the header: the step token, the addressee of point-to-point
//            ops, the owner of an all-gather broadcast.
//   op       a chunk is for the operation running now, or for the very next one (a peer can be at most
//            one operation ahead: it cannot finish one without this rank's contribution); its step can
//            only be this step or the next. Anything else is stale or forged.
//
// Early chunks (the next operation's) wait in a bounded buffer: a peer can legitimately have at most one
// window of reduce-scatter chunks in flight towards this rank, so more than twice that is a flood
// (CollectiveFloodError), never unbounded memory.
import type { ChunkMeta } from './all-reduce.ts';
import { CollectiveFloodError } from './errors.ts';

/** The NATS header that carries the sender's instance token on every message of a group. */
export const SENDER_HEADER = 'dalle-sender';

/** What this rank knows about its group when a message arrives. */
export interface GroupView {
  rank: number;
  worldSize: number;
  /** Instance token of each peer, from its join announcement. */
  peers: ReadonlyMap<number, string>;
}

/** Tokens of a subject `dalle.<run>.<group>.<op>.<step>.<rank>` after the group prefix. */
export interface SubjectParts {
  op: string;
  step: number;
  rank: number;
}

/** The operation this rank is in (or about to start) when a chunk arrives. */
export interface Awaited {
  /** The running operation, if any. */
  current?: { opIndex: number; step: number };
  /** Index the next operation will get (current.opIndex + 1 while one runs). */
  nextOp: number;
  /** Step of the last operation this rank started (-1 before the first). */
  lastStep: number;
}

/** Why a message was not believed; it is dropped and counted, never used. */
export interface Rejection {
  reason: string;
  subject: string;
  /** The rank the message claimed to come from (when it said). */
  claimed?: number;
}

/** undefined when `instance` is what rank `from` joined with; otherwise why not. */
export function checkSender(from: number, instance: string | undefined, g: GroupView): string | undefined {
  if (!Number.isInteger(from) || from < 0 || from >= g.worldSize)
    return `sender rank ${from} is not in the group`;
  if (from === g.rank) return `claims to come from this rank (${from})`;
  const known = g.peers.get(from);
  if (known === undefined) return `rank ${from} has not joined`;
  if (instance !== known) return `not sent by the process that joined as rank ${from}`;
  return undefined;
}

/** 'current' / 'early' for a chunk this rank should use, or a reason to drop it. */
export function checkChunk(
  meta: ChunkMeta,
  instance: string | undefined,
  subject: SubjectParts,
  g: GroupView,
  a: Awaited,
): 'current' | 'early' | { reject: string } {
  const bad = (reason: string) => ({ reject: reason });
  const sender = checkSender(meta.from, instance, g);
  if (sender) return bad(sender);
  if (subject.step !== Math.max(0, meta.step))
    return bad(`subject step ${subject.step} ≠ header step ${meta.step}`);
  if (subject.op === 'ag') {
    if (subject.rank !== meta.from || meta.seg !== meta.from || meta.phase !== 'ag')
      return bad(
        `all-gather on rank ${subject.rank}'s subject claims sender ${meta.from}, segment ${meta.seg}`,
      );
  } else if (subject.rank !== g.rank) {
    return bad(`addressed to rank ${subject.rank}, not this rank`);
  } else if (subject.op === 'rs' && meta.phase !== 'rs') {
    return bad(`a ${meta.phase} chunk on a reduce-scatter subject`);
  }
  if (a.current && meta.opIndex === a.current.opIndex) return 'current';
  if (meta.opIndex !== a.nextOp)
    return bad(`operation #${meta.opIndex} is not awaited (next is #${a.nextOp})`);
  if (a.lastStep >= 0 && (meta.step < a.lastStep || meta.step > a.lastStep + 1))
    return bad(`step ${meta.step} of an early chunk is neither step ${a.lastStep} nor the next`);
  return 'early';
}

/** Chunks of the next operation that arrived before this rank started it; bounded. */
export class EarlyChunks {
  private chunks: { meta: ChunkMeta; data: Uint8Array }[] = [];
  private readonly seen = new Set<string>();
  private bytes = 0;

  constructor(
    /** Most payload bytes held (a peer's window is the most it may legitimately send ahead). */
    readonly maxBytes: number,
    /** Most chunks held. */
    readonly maxChunks: number,
  ) {}

  /** Keeps a chunk (a duplicate is dropped); throws CollectiveFloodError past the bounds. */
  add(meta: ChunkMeta, data: Uint8Array): void {
    const key = `${meta.opIndex}/${meta.from}/${meta.phase}/${meta.seg}/${meta.chunk}`;
    if (this.seen.has(key)) return;
    if (this.bytes + data.byteLength > this.maxBytes || this.chunks.length + 1 > this.maxChunks) {
      const from = [...new Set([...this.chunks.map((c) => c.meta.from), meta.from])].sort((x, y) => x - y);
      throw new CollectiveFloodError(
        this.bytes + data.byteLength,
        this.maxBytes,
        this.chunks.length + 1,
        this.maxChunks,
        from,
      );
    }
    this.seen.add(key);
    this.chunks.push({ meta, data });
    this.bytes += data.byteLength;
  }

  /** Hands over (and forgets) what was kept for `opIndex`; everything else is dropped. */
  take(opIndex: number): { meta: ChunkMeta; data: Uint8Array }[] {
    const out = this.chunks.filter((c) => c.meta.opIndex === opIndex);
    this.clear();
    return out;
  }

  clear(): void {
    this.chunks = [];
    this.seen.clear();
    this.bytes = 0;
  }

  get heldBytes(): number {
    return this.bytes;
  }
}
