// The paper's layout of a segment's ranks: parameters sharded among the ranks of one host, PowerSGD only
// between hosts. Which rank is on which host is known only once the ranks have started (Temporal places
// them on whichever workers poll), so the ranks find out together: each puts a hash of its host id into an
// all-reduce, and every rank derives the same layout from the sum.
//
//   host h = order of first appearance (by rank) of the host's id;  local l = order among its host's ranks
//   rank (h, l) owns piece l of every parameter: rows [⌊l·rows/G⌋, ⌊(l+1)·rows/G⌋) of its
//   [prod(shape[:-1]), shape[-1]] view (elements, when it has fewer rows than G)
//
// Pieces are row blocks so that a rank's piece of a matrix is itself a matrix PowerSGD can compress (at
// rank ⌈r/G⌉: see pieceConfig); the ranks holding piece l on every host form the cross-host group l. Every host must have the same
// number of ranks G (each piece needs a holder everywhere); a placement that is uneven runs the segment
// with G = 1 (every rank on its own: the flat scheme in the sharded checkpoint format) and says so.
import type { PowerSgdConfig } from '../config/index.ts';
import type { Group } from '../collective/index.ts';
import type { ParamPiece, ParamSpec } from '../model/index.ts';

export interface HostLayout {
  /** Hosts H and ranks per host G (W = H·G). */
  hosts: number;
  perHost: number;
  /** Per rank of the segment: its host index and its index among the host's ranks. */
  hostOf: number[];
  localOf: number[];
  /** Ranks per host id when the placement was uneven (and G fell back to 1). */
  uneven?: Record<string, number>;
}

/** FNV-1a of the host id, as two 16-bit halves (exact in float32, so they survive an fp32 all-reduce). */
export function hostHash(hostId: string): [number, number] {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(hostId)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return [h >>> 16, h & 0xffff];
}

/** The layout of ranks whose host hashes are `hashes` (rank order). */
export function layoutOf(hashes: readonly number[]): HostLayout {
  const order: number[] = [];
  const count = new Map<number, number>();
  const hostOf: number[] = [];
  const localOf: number[] = [];
  for (const h of hashes) {
    if (!count.has(h)) order.push(h);
    localOf.push(count.get(h) ?? 0);
    count.set(h, (count.get(h) ?? 0) + 1);
    hostOf.push(order.indexOf(h));
  }
  const sizes = order.map((h) => count.get(h)!);
  if (sizes.every((n) => n === sizes[0]))
    return { hosts: order.length, perHost: sizes[0] ?? 1, hostOf, localOf };
  const uneven = Object.fromEntries(order.map((h, i) => [`host${i}`, sizes[i]!]));
  return {
    hosts: hashes.length,
    perHost: 1,
    hostOf: hashes.map((_, r) => r),
    localOf: hashes.map(() => 0),
    uneven,
  };
}

/** Every rank's host, gathered over the segment's group (one fp32 all-reduce of 2·W values). */
export async function discoverLayout(group: Group, hostId: string, step: number): Promise<HostLayout> {
  const v = new Float32Array(2 * group.worldSize);
  [v[2 * group.rank], v[2 * group.rank + 1]] = hostHash(hostId);
  const sum = await group.allReduce(v, step, 'hosts');
  return layoutOf(Array.from({ length: group.worldSize }, (_, r) => sum[2 * r]! * 0x10000 + sum[2 * r + 1]!));
}

/** Piece `local` of `perHost` of every parameter (empty pieces left out). */
export function paramPieces(specs: readonly ParamSpec[], perHost: number, local: number): ParamPiece[] {
  const out: ParamPiece[] = [];
  specs.forEach((s, index) => {
    const numel = s.shape.reduce((a, b) => a * b, 1);
    const cols = s.shape.length > 1 ? s.shape.at(-1)! : 1;
    const unit = numel / cols >= perHost ? cols : 1; // rows, or elements when there are too few rows
    const units = numel / unit;
    const from = Math.floor((local * units) / perHost) * unit;
    const to = Math.floor(((local + 1) * units) / perHost) * unit;
    if (to > from) out.push({ index, name: s.name, offset: from, length: to - from });
  });
  return out;
}

/** The pieces as parameters of their own (what the rank's PowerSGD compresses): a row block keeps its
 *  columns, an element range is a vector. */
export function pieceSpecs(specs: readonly ParamSpec[], pieces: readonly ParamPiece[]): ParamSpec[] {
  return pieces.map((p) => {
    const s = specs[p.index]!;
    const cols = s.shape.length > 1 ? s.shape.at(-1)! : 1;
    const whole = p.length === s.shape.reduce((a, b) => a * b, 1);
    const rows = s.shape.length > 1 && p.offset % cols === 0 && p.length % cols === 0;
    const shape = whole ? [...s.shape] : rows ? [p.length / cols, cols] : [p.length];
    return { name: s.name, shape, kind: s.kind };
  });
}

/** PowerSGD of one rank's pieces: `powersgd.rank` is a matrix's budget, split among the G slices of it
 *  (⌈r/G⌉ each, at least 1). The G slices then carry about one rank-r approximation's worth of P and Q
 *  between them, so what a host sends shrinks about G-fold whichever side of a matrix is cut, instead of
 *  each slice repeating a full-rank P along the side that was not cut. */
export function pieceConfig(cfg: PowerSgdConfig, perHost: number): PowerSgdConfig {
  return { ...cfg, rank: Math.max(1, Math.ceil(cfg.rank / perHost)) };
}
