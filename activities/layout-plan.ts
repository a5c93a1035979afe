// Memory per rank and bytes crossing hosts per step, flat vs sharded within hosts, counted from the
// parameter shapes and the PowerSGD config alone (nothing is allocated, so paper-12b can be laid out on
// paper). The same accounting the runtimes report for what they hold (rank-runtime.ts `memory()`), so a
// measured run checks the plan.
//
// Cross-host traffic of our all-reduce (reduce-scatter, then all-gather of the reduced segments): a rank
// contributing L bytes to a group of n sends L/n to each peer and its reduced L/n to every peer, so
// 2·L·(peers on other hosts)/n of it crosses hosts. Flat: the group is all W ranks, W − G of them
// elsewhere; sharded: group l has one rank per host, all H − 1 peers elsewhere, and carries only piece l.
import type { PowerSgdConfig } from '../config/index.ts';
import { planCompression, type CompressionPlan } from '../collective/index.ts';
import type { ParamSpec } from '../model/index.ts';
import { paramPieces, pieceConfig, pieceSpecs } from './host-layout.ts';

/** Bytes one rank holds across steps, by kind (activations not included: they depend on the per-rank
 *  batch and recomputation, not on the layout). */
export interface RankBytes {
  /** Full parameters, fp32, gathered before the forward. */
  params: number;
  /** The full gradient of the backward pass, fp32. */
  grads: number;
  /** AdamW: m, v, EMA (and, sharded, the rank's fp32 master copy of its pieces). */
  optimizer: number;
  /** PowerSGD error buffers and warm-start Q. */
  powersgd: number;
  total: number;
}

export interface LayoutPlan {
  hosts: number;
  perHost: number;
  worldSize: number;
  parameters: number;
  flat: RankBytes;
  /** The largest of the G ranks of a host (pieces differ by at most a row). */
  sharded: RankBytes;
  /** Gradient bytes leaving (and entering) one host per step, PowerSGD on. */
  crossHostPerStep: { flat: number; sharded: number };
  /** PowerSGD's compression of what crosses hosts: 1 − sent / fp32. */
  compression: { flat: number; sharded: number };
}

const numelOf = (s: ParamSpec) => s.shape.reduce((a, b) => a * b, 1);

function powersgdBytes(plan: CompressionPlan, warmStart: boolean): number {
  let n = 0;
  for (const p of plan.params) if (p.compressed) n += p.numel + (warmStart ? p.m * p.r : 0);
  return 4 * n;
}

function bytes(params: number, grads: number, optimizer: number, powersgd: number): RankBytes {
  return { params, grads, optimizer, powersgd, total: params + grads + optimizer + powersgd };
}

/** Cross-host bytes of one all-reduce of `payload` bytes per rank over a group of `n` ranks, `remote` of
 *  whose peers are on other hosts, summed over the `ranks` of one host that take part. */
export function crossHostBytes(payload: number, n: number, remote: number, ranks: number): number {
  return n > 1 ? (2 * payload * remote * ranks) / n : 0;
}

/** The plan of `specs` on `hosts` × `perHost` ranks (perHost 1: the flat layout is both columns). */
export function planLayout(
  specs: readonly ParamSpec[],
  psgd: PowerSgdConfig,
  hosts: number,
  perHost: number,
): LayoutPlan {
  const W = hosts * perHost;
  const N = specs.reduce((n, s) => n + numelOf(s), 0);
  const cfg = { ...psgd, enabled: true };
  const flatPlan = planCompression([...specs], cfg);
  const flat = bytes(4 * N, 4 * N, 3 * 4 * N, powersgdBytes(flatPlan, cfg.warmStart));
  let sharded = bytes(0, 0, 0, 0);
  let shardedSent = 0;
  let shardedRaw = 0;
  for (let l = 0; l < perHost; l++) {
    const pieces = paramPieces(specs, perHost, l);
    const plan = planCompression(pieceSpecs(specs, pieces), pieceConfig(cfg, perHost));
    const own = pieces.reduce((n, p) => n + p.length, 0);
    const mine = bytes(4 * N, 4 * N, 4 * 4 * own, powersgdBytes(plan, cfg.warmStart));
    if (mine.total > sharded.total) sharded = mine;
    shardedSent += crossHostBytes(plan.bytesSent, hosts, hosts - 1, 1);
    shardedRaw += crossHostBytes(plan.bytesRaw, hosts, hosts - 1, 1);
  }
  const flatSent = crossHostBytes(flatPlan.bytesSent, W, W - perHost, perHost);
  const flatRaw = crossHostBytes(flatPlan.bytesRaw, W, W - perHost, perHost);
  return {
    hosts,
    perHost,
    worldSize: W,
    parameters: N,
    flat,
    sharded,
    crossHostPerStep: { flat: flatSent, sharded: shardedSent },
    compression: {
      flat: flatRaw ? 1 - flatSent / flatRaw : 0,
      sharded: shardedRaw ? 1 - shardedSent / shardedRaw : 0,
    },
  };
}
