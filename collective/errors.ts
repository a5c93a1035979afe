// One Error subclass per way a collective operation can fail, each carrying the facts (which ranks, which
// step, which field) so the runtime can decide: PeerLostError → relaunch the segment with a fresh group;
// everything else is a programming or configuration error that a relaunch will not fix.

/** A peer did not arrive, stopped answering, or left while data from it was still needed. Raised on every
 *  surviving rank within the group's timeout; the group is unusable afterwards. */
export class PeerLostError extends Error {
  override name = 'PeerLostError';
  constructor(
    /** The ranks that are gone (sorted, never empty). */
    readonly ranks: number[],
    /** The step of the operation that noticed, or null during join. */
    readonly step: number | null,
    /** The operation: 'join', 'allReduce:<tag>', 'barrier', 'close'. */
    readonly op: string,
    /** Why the ranks count as lost, e.g. 'no responders', 'no progress for 20000 ms', 'abort from rank 1'. */
    readonly reason: string,
    /** The rank that raised it. */
    readonly rank: number,
  ) {
    super(
      `rank ${rank}: peer rank(s) ${ranks.join(', ')} lost during ${op}${step === null ? '' : ` at step ${step}`}: ${reason}`,
    );
  }
}

/** A chunk a peer published was lost on the wire and the peer can no longer resend it (its copy was
 *  released). Never summed as zero: the operation fails instead. */
export class ChunkLostError extends Error {
  override name = 'ChunkLostError';
  constructor(
    readonly from: number,
    readonly step: number,
    readonly op: string,
    readonly phase: 'reduce-scatter' | 'all-gather',
    readonly chunks: number[],
  ) {
    super(
      `${phase} chunk(s) ${chunks.slice(0, 8).join(', ')}${chunks.length > 8 ? ', …' : ''} from rank ${from} of ${op} at step ${step} were lost and can no longer be resent`,
    );
  }
}

/** Ranks called the same collective operation with different arguments (length, tag, step, wire), or in a
 *  different order. Every rank must issue the same operations in the same order. */
export class CollectiveMismatchError extends Error {
  override name = 'CollectiveMismatchError';
  constructor(
    readonly field: string,
    readonly local: string | number,
    readonly remote: string | number,
    readonly peer: number,
    readonly opIndex: number,
  ) {
    super(
      `operation #${opIndex}: ${field} is ${String(local)} here but ${String(remote)} on rank ${peer}; all ranks must issue the same collective calls in the same order`,
    );
  }
}

/** A peer (or something posing as one) sent far more chunks ahead of this rank than the flow-control
 *  window allows. The group fails instead of buffering without bound. */
export class CollectiveFloodError extends Error {
  override name = 'CollectiveFloodError';
  constructor(
    readonly bytes: number,
    readonly maxBytes: number,
    readonly chunks: number,
    readonly maxChunks: number,
    /** Ranks the buffered chunks claimed to come from. */
    readonly from: number[],
  ) {
    super(
      `early chunks from rank(s) ${from.join(', ')} exceed the bound (${bytes} bytes / ${chunks} chunks; at most ${maxBytes} / ${maxChunks}): a flood, not a peer one operation ahead`,
    );
  }
}

/** Two processes claimed the same rank of a group (or a restarted process reused a live group id). */
export class DuplicateRankError extends Error {
  override name = 'DuplicateRankError';
  constructor(
    readonly rank: number,
    readonly groupId: string,
  ) {
    super(`rank ${rank} of group ${groupId} was claimed by two processes; use a fresh group id per launch`);
  }
}

/** An argument to a collective call is invalid (bad rank, world size, id token, timeout, array). */
export class CollectiveArgumentError extends Error {
  override name = 'CollectiveArgumentError';
  readonly fatal = true;
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly problem: string,
  ) {
    super(`${field} ${problem} (got ${describe(value)})`);
  }
}

/** The group was closed, or failed earlier; no further operations run on it. */
export class GroupClosedError extends Error {
  override name = 'GroupClosedError';
  constructor(
    readonly groupId: string,
    readonly rank: number,
    override readonly cause?: Error,
  ) {
    super(`group ${groupId} (rank ${rank}) is closed${cause ? `: ${cause.message}` : ''}`);
  }
}

/** Gradients handed to PowerSgd.reduce do not match its parameter specs. */
export class GradientShapeError extends Error {
  override name = 'GradientShapeError';
  constructor(
    readonly param: string,
    readonly expected: number,
    readonly actual: number | string,
  ) {
    super(`gradient for ${param}: expected a Float32Array of ${expected} values, got ${actual}`);
  }
}

/** A PowerSGD state blob is corrupt, from another format version, or for other parameters / another rank. */
export class PowerSgdStateError extends Error {
  override name = 'PowerSgdStateError';
  constructor(
    readonly reason: string,
    readonly bytes: number,
  ) {
    super(`cannot load PowerSGD state (${bytes} bytes): ${reason}`);
  }
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof Float32Array) return `Float32Array(${v.length})`;
  if (typeof v === 'object' && v !== null) return v.constructor?.name ?? 'object';
  return String(v);
}
