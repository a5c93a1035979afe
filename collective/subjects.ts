// The NATS subject scheme is a contract (docs/operations.md): dalle.<runId>.<groupId>.<op>.<step>.<rank>.
// `<rank>` is the addressee for point-to-point ops (rs, re, nack) and the sender for broadcasts (ag, join,
// bye, abort), so that every rank subscribes only to what it must read: a literal `<me>` token for
// point-to-point traffic and one subscription per peer for the big all-gather broadcasts (no echo of its own).
import { CollectiveArgumentError } from './errors.ts';

/** Ops on the wire. */
export const Op = {
  /** reduce-scatter chunk, to the segment's owner */
  reduceScatter: 'rs',
  /** all-gather chunk of a reduced segment, broadcast by its owner */
  allGather: 'ag',
  /** resend of a lost chunk, to the rank that asked */
  resend: 're',
  /** request-reply: "resend what I am missing" (no responders = the peer is gone) */
  nack: 'nack',
  /** join barrier announcement */
  join: 'join',
  /** graceful leave */
  bye: 'bye',
  /** a rank gave up on a peer: every survivor fails the same way */
  abort: 'abort',
} as const;
export type Op = (typeof Op)[keyof typeof Op];

const TOKEN = /^[A-Za-z0-9_-]{1,128}$/;

/** Throws CollectiveArgumentError unless `value` can be one token of a subject (no dots, spaces, wildcards). */
export function checkToken(field: string, value: unknown): string {
  if (typeof value !== 'string' || !TOKEN.test(value)) {
    throw new CollectiveArgumentError(
      field,
      value,
      'must be 1-128 characters of [A-Za-z0-9_-] (it becomes a NATS subject token)',
    );
  }
  return value;
}

export class Subjects {
  readonly prefix: string;
  constructor(runId: string, groupId: string) {
    this.prefix = `dalle.${checkToken('runId', runId)}.${checkToken('groupId', groupId)}`;
  }
  /** A concrete subject. Negative steps (join) are written as 0. */
  of(op: Op, step: number, rank: number): string {
    return `${this.prefix}.${op}.${Math.max(0, step)}.${rank}`;
  }
  /** What `rank` subscribes to for op: point-to-point ops addressed to it, or broadcasts from `rank`. */
  pattern(op: Op, rank: number | '*'): string {
    return `${this.prefix}.${op}.*.${rank}`;
  }
}
