// The paper's layout (train.parameterSharding 'host'): parameters sharded among the ranks of a host,
// PowerSGD only between hosts. One step on rank (h, l) of H hosts × G ranks:
//   1. reduce-scatter within the host: the host's mean gradient of piece l (host-layout.ts)
//   2. PowerSGD between hosts on piece l only (at rank ⌈r/G⌉), with the ranks holding piece l on every
//      host: the global mean of the piece; this rank's error buffers cover only its piece
//   3. the host agrees on the global gradient norm (clipping) and on skipping (a non-finite value in any
//      piece skips the step on every rank)
//   4. this rank's shard of AdamW (model/sharded-adamw.ts) updates piece l
//   5. all-gather within the host: full parameters for the next forward
// Cross-host traffic is PowerSGD's payload of one piece per rank, so a host sends 1/G of what the flat
// scheme sends from each of its G ranks; AdamW state per rank is 1/G of the flat scheme's.
//
// Within the host a vector is laid out piece-major: segment l holds rank l's pieces of every parameter
// (then one slot for the loss), so the collective's reduce-scatter leaves each rank exactly its pieces'
// sums and its all-gather assembles the parameters from every rank's pieces, each a half of an
// all-reduce's traffic.
import type { NatsConnection } from 'nats';
import { joinGroup, PowerSgd, reshardPowerSgdState, type Group, type PieceMap } from '../collective/index.ts';
import {
  ShardedAdamW,
  type OutsideRewrite,
  type OutsideRewrites,
  type ParamPiece,
  type ParamSpec,
  type Trainer,
} from '../model/index.ts';
import type { CheckpointManifest, CheckpointStore, PartRef } from '../store/index.ts';
import { stagePowerSgd, type TrainShardInput } from '../contract/index.ts';
import { discoverLayout, paramPieces, pieceConfig, pieceSpecs, type HostLayout } from './host-layout.ts';
import { rankParts } from './rank-state.ts';
import type { RankMemory, RankRuntime, StepOutcome } from './rank-runtime.ts';

/** A checkpoint of the other layout: a run keeps the layout it started with. */
export class LayoutMismatchError extends Error {
  override name = 'LayoutMismatchError';
  readonly fatal = true;
  constructor(
    readonly step: number,
    readonly found: string,
  ) {
    super(
      `checkpoint ${step} was written by the ${found} layout and this run shards parameters within hosts (train.parameterSharding 'host'): a run keeps the layout it started with`,
    );
  }
}

/** The manifest's record of a sharded checkpoint's layout. */
export interface LayoutMeta extends Omit<HostLayout, 'uneven'> {
  kind: 'host';
}

export interface ShardedDeps {
  nc: NatsConnection;
  checkpoints: CheckpointStore;
  hostId: string;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

const numelOf = (s: ParamSpec) => s.shape.reduce((a, b) => a * b, 1);
const pieceMap = (pieces: ParamPiece[]): PieceMap => new Map(pieces.map((p) => [p.name, p]));

/** Finds the layout, joins the host and cross-host groups and restores this rank's shard. `manifest`:
 *  the checkpoint the segment starts from (its parameters already loaded into `trainer`). */
export async function openShardedRuntime(
  deps: ShardedDeps,
  input: TrainShardInput,
  world: Group,
  trainer: Trainer<unknown>,
  manifest: CheckpointManifest | undefined,
): Promise<ShardedRuntime> {
  const { spec, rank, fromStep } = input;
  const layout = await discoverLayout(world, deps.hostId, fromStep);
  if (layout.uneven && rank === 0)
    deps.log(`ranks per host are uneven (${JSON.stringify(layout.uneven)}): this segment runs unsharded`);
  const [h, l] = [layout.hostOf[rank]!, layout.localOf[rank]!];
  const specs = trainer.paramSpecs();
  const pieces = paramPieces(specs, layout.perHost, l);
  const psgd = new PowerSgd(
    pieceSpecs(specs, pieces),
    pieceConfig(stagePowerSgd(spec, input.stage), layout.perHost),
    {
      rank: h,
      worldSize: layout.hosts,
      seed: spec.train.seed,
    },
  );
  const params = trainer.exportParams('params');
  const opt = new ShardedAdamW(pieces, params);
  if (manifest)
    await restoreShard(deps.checkpoints, manifest, { layout, h, l, specs, pieces, opt, psgd, params });
  const join = (groupId: string, r: number, W: number) =>
    joinGroup({
      nc: deps.nc,
      runId: input.runId,
      groupId,
      rank: r,
      worldSize: W,
      timeoutMs: spec.train.collectiveTimeout * 1000,
      joinTimeoutMs: spec.train.joinTimeout * 1000,
    });
  const [host, cross] = await Promise.all([
    join(`${input.groupId}-h${h}`, l, layout.perHost),
    join(`${input.groupId}-s${l}`, h, layout.hosts),
  ]);
  return new ShardedRuntime(deps.checkpoints, input, trainer, { layout, pieces, opt, psgd, host, cross });
}

interface Shard {
  layout: HostLayout;
  h: number;
  l: number;
  specs: ParamSpec[];
  pieces: ParamPiece[];
  opt: ShardedAdamW;
  psgd: PowerSgd;
  params: Float32Array[];
}

/** This rank's optimizer shard and PowerSGD state from a sharded checkpoint. The same layout loads its
 *  own parts exactly; another one re-slices the optimizer shards and re-shards the error buffers. */
async function restoreShard(ck: CheckpointStore, m: CheckpointManifest, s: Shard): Promise<void> {
  const old = m.meta.layout as LayoutMeta | undefined;
  if (old?.kind !== 'host') throw new LayoutMismatchError(m.step, 'flat');
  const opts = m.parts.map((p) => p.name).filter((n) => /^opt\d+$/.test(n));
  const own = `opt${s.l}`;
  const load = (name: string) => ck.loadPart(m, name);
  const optParts = old.perHost === s.layout.perHost && opts.includes(own) ? [own] : opts;
  s.opt.loadState(await Promise.all(optParts.map(load)), s.params);
  const same = old.hosts === s.layout.hosts && old.perHost === s.layout.perHost;
  const was = same ? old.hostOf.findIndex((hh, r) => hh === s.h && old.localOf[r] === s.l) : -1;
  if (was >= 0) return s.psgd.loadState(await load(`rank${was}`));
  const saved = [];
  for (const name of rankParts(m)) {
    const r = Number(name.slice(4));
    saved.push({
      bytes: await load(name),
      pieces: pieceMap(paramPieces(s.specs, old.perHost, old.localOf[r]!)),
    });
  }
  const numel = new Map(s.specs.map((p) => [p.name, numelOf(p)]));
  s.psgd.loadState(reshardPowerSgdState(saved, { psgd: s.psgd, pieces: pieceMap(s.pieces), numel }));
}

export class ShardedRuntime implements RankRuntime {
  private readonly offsets: number[];
  private readonly total: number;
  private readonly rewrites?: OutsideRewrites;
  /** Every local rank's pieces (index l: rank l of the host), and the segments of a host-wide vector. */
  private readonly hostPieces: ParamPiece[][];
  private readonly segments: number[];

  constructor(
    private readonly checkpoints: CheckpointStore,
    private readonly input: TrainShardInput,
    private readonly trainer: Trainer<unknown>,
    readonly s: {
      layout: HostLayout;
      pieces: ParamPiece[];
      opt: ShardedAdamW;
      psgd: PowerSgd;
      host: Group;
      cross: Group;
    },
  ) {
    let at = 0;
    this.offsets = trainer.paramSpecs().map((p) => ((at += numelOf(p)), at - numelOf(p)));
    this.total = at;
    this.rewrites = trainer.outsideRewrites;
    const G = s.layout.perHost;
    this.hostPieces = Array.from({ length: G }, (_, l) => paramPieces(trainer.paramSpecs(), G, l));
    this.segments = [0];
    for (const ps of this.hostPieces)
      this.segments.push(this.segments.at(-1)! + ps.reduce((n, p) => n + p.length, 0) + 1);
  }

  async step(grads: Float32Array[], step: number, localLoss: number): Promise<StepOutcome> {
    const before = this.s.host.counters();
    const out = await this.update(grads, step, localLoss);
    const after = this.s.host.counters();
    const hostBytes = { sent: after.bytesOut - before.bytesOut, received: after.bytesIn - before.bytesIn };
    return { ...out, hostBytes };
  }

  private async update(
    grads: Float32Array[],
    step: number,
    localLoss: number,
  ): Promise<Omit<StepOutcome, 'hostBytes'>> {
    const { layout, opt, psgd, host, cross } = this.s;
    const G = layout.perHost;
    const hostAllReduce = (v: Float32Array, tag: string) => (G > 1 ? host.allReduce(v, { step, tag }) : v);
    // 1. Reduce-scatter within the host: the host's mean of this rank's pieces (and of the loss).
    const { mine, hostLoss } = await this.reduceScatter(grads, localLoss, step);
    // 2. PowerSGD between hosts, on this rank's pieces only; the hosts' losses ride along.
    const r = await psgd.reduce(cross, mine, step, Float32Array.of(hostLoss));
    const loss = r.extras[0]! / cross.worldSize;
    // 3. The host agrees on skipping, on the global gradient norm and on the rows' Σg² a rewrite watches.
    const agreed = await hostAllReduce(this.control(r.skipped, r.grads), 'norm');
    const outcome = {
      bytesRaw: r.stats.bytesRaw,
      bytesSent: r.stats.bytesSent,
      loss,
      exposedCommMs: r.stats.exposedCommMs,
    };
    if (agreed[0]! > 0) return { ...outcome, skipped: true, metrics: {} };
    // 4. This rank's shard of AdamW (the schedules observe the loss as applyGradients would).
    const rule = this.trainer.updateRule(step, loss);
    const gradNorm = Math.sqrt(agreed[1]!);
    if (!Number.isFinite(gradNorm))
      return {
        ...outcome,
        skipped: false,
        metrics: { lr: rule.lr, gradNorm, skipped: 1, updates: opt.updates },
      };
    const clip = rule.maxGradNorm !== undefined && gradNorm > rule.maxGradNorm;
    const u = opt.apply(r.grads, rule, clip ? rule.maxGradNorm! / gradNorm : 1);
    const rewrite = this.rewrites?.observe(step, agreed.subarray(2));
    if (rewrite) await this.rewrite(rewrite, step);
    // 5. All-gather within the host: full parameters for the next forward.
    this.trainer.setParams(await this.allGather(step, 'ag', opt.arrays().values), u.updates);
    const restarts: Record<string, number> = this.rewrites ? { codeRestarts: rewrite?.count ?? 0 } : {};
    return {
      ...outcome,
      skipped: false,
      metrics: { lr: rule.lr, gradNorm, clipped: clip ? 1 : 0, updates: u.updates, ...restarts },
    };
  }

  /** What the host all-reduces after PowerSGD: [skipped, Σg² of this rank's pieces, then, when the trainer
   *  watches a gradient for rewrites, Σg² of each of its rows over the elements this rank holds]. */
  private control(skipped: boolean, grads: readonly Float32Array[]): Float32Array {
    const { pieces } = this.s;
    const watch = this.rewrites?.watch;
    const spec = watch === undefined ? undefined : this.trainer.paramSpecs()[watch]!;
    const cols = spec && spec.shape.length > 1 ? spec.shape.at(-1)! : 1;
    const rows = spec ? numelOf(spec) / cols : 0;
    const out = new Float32Array(2 + rows);
    if (skipped) return ((out[0] = 1), out);
    out[1] = ShardedAdamW.sumSquares(grads);
    const rowSq = new Float64Array(rows);
    pieces.forEach((p, k) => {
      if (p.index !== watch) return;
      const g = grads[k]!;
      for (let i = 0; i < g.length; i++) rowSq[Math.floor((p.offset + i) / cols)]! += g[i]! * g[i]!;
    });
    out.set(rowSq, 2);
    return out;
  }

  /** A rewrite of whole parameters (dead-code restarts): the host gathers their values, moments and EMA,
   *  every rank applies the same rewrite to them, and keeps its pieces of the result. */
  private async rewrite(rw: OutsideRewrite, step: number): Promise<void> {
    const { pieces, opt } = this.s;
    const specs = this.trainer.paramSpecs();
    const sizes = rw.params.map((i) => numelOf(specs[i]!));
    const at: number[] = [];
    const S = sizes.reduce((a, n) => (at.push(a), a + n), 0);
    const a = opt.arrays();
    const kinds = [a.values, a.m, a.v, a.ema];
    const mine = pieces.flatMap((p, k) => {
      const j = rw.params.indexOf(p.index);
      return j < 0 ? [] : [{ p, k, j }];
    });
    const full = await this.hostGather(step, 'rewrite', 4 * S, (buf) => {
      for (const { p, k, j } of mine) kinds.forEach((arr, w) => buf.set(arr[k]!, w * S + at[j]! + p.offset));
    });
    const of = (w: number) => sizes.map((n, j) => full.subarray(w * S + at[j]!, w * S + at[j]! + n));
    rw.apply(of(0), [of(1), of(2), of(3)]);
    for (const { p, k, j } of mine)
      kinds.forEach((arr, w) =>
        arr[k]!.set(full.subarray(w * S + at[j]! + p.offset, w * S + at[j]! + p.offset + p.length)),
      );
  }

  /** A vector of `length` assembled from every rank's pieces within the host: `place` writes this rank's
   *  into it (the others' places stay 0, so the host's sum is every rank's pieces, exactly). For the
   *  rewrites' few whole tensors, laid out as the parameters are. */
  private async hostGather(
    step: number,
    tag: string,
    length: number,
    place: (buf: Float32Array) => void,
  ): Promise<Float32Array> {
    const buf = new Float32Array(length);
    place(buf);
    return this.s.layout.perHost > 1 ? this.s.host.allReduce(buf, { step, tag, inPlace: true }) : buf;
  }

  async gatherEma(step: number): Promise<Float32Array[] | undefined> {
    const { layout, opt } = this.s;
    const { rank } = this.input;
    // Every host holds the same EMA: host 0's ranks assemble it for rank 0.
    if (layout.hostOf[rank] !== 0) return undefined;
    const ema = await this.allGather(step, 'ema', opt.arrays().ema);
    return rank === 0 ? ema : undefined;
  }

  /** The host's mean of this rank's gradient pieces and of the ranks' losses: segment l of the reduced
   *  vector is rank l's (see the file header). */
  private async reduceScatter(
    grads: Float32Array[],
    localLoss: number,
    step: number,
  ): Promise<{ mine: Float32Array[]; hostLoss: number }> {
    const { layout, pieces, host } = this.s;
    const G = layout.perHost;
    if (G === 1)
      return {
        mine: pieces.map((p) => grads[p.index]!.slice(p.offset, p.offset + p.length)),
        hostLoss: localLoss,
      };
    const v = new Float32Array(this.segments[G]!);
    this.hostPieces.forEach((ps, l) => {
      let at = this.segments[l]!;
      for (const p of ps) {
        v.set(grads[p.index]!.subarray(p.offset, p.offset + p.length), at);
        at += p.length;
      }
      v[at] = localLoss;
    });
    const opts = { step, tag: 'rs', mode: 'scatter', segments: this.segments, inPlace: true } as const;
    const sum = await host.allReduce(v, opts);
    let at = this.segments[host.rank]!;
    const mine = pieces.map((p) => sum.subarray(at, (at += p.length)).map((x) => x / G));
    return { mine, hostLoss: sum[at]! / G };
  }

  /** Full parameters (`paramSpecs()` order) from every rank's `arrays`, its pieces' values (or EMA). */
  private async allGather(
    step: number,
    tag: string,
    arrays: readonly Float32Array[],
  ): Promise<Float32Array[]> {
    const { layout, host } = this.s;
    const G = layout.perHost;
    const v = new Float32Array(this.segments[G]!);
    let at = this.segments[host.rank]!;
    for (const a of arrays) v.set(a, (at += a.length) - a.length);
    const all =
      G > 1
        ? await host.allReduce(v, { step, tag, mode: 'gather', segments: this.segments, inPlace: true })
        : v;
    const full = new Float32Array(this.total);
    this.hostPieces.forEach((ps, l) => {
      let from = this.segments[l]!;
      for (const p of ps) full.set(all.subarray(from, (from += p.length)), this.offsets[p.index]! + p.offset);
    });
    return this.views(full);
  }

  private views(flat: Float32Array): Float32Array[] {
    return this.offsets.map((o, i) =>
      flat.subarray(o, i + 1 < this.offsets.length ? this.offsets[i + 1]! : this.total),
    );
  }

  async saveParts(step: number): Promise<{ mine: PartRef[]; params?: PartRef }> {
    const { runId, stage, rank } = this.input;
    const { layout, opt, psgd } = this.s;
    const put = (name: string, bytes: Uint8Array) =>
      this.checkpoints.putPart(runId, stage, step, name, bytes);
    const mine = [await put(`rank${rank}`, psgd.saveState())];
    // Every host holds the same optimizer shards (the same averaged pieces, the same update): host 0's go in.
    if (layout.hostOf[rank] === 0) mine.push(await put(`opt${layout.localOf[rank]}`, opt.saveState()));
    const params = rank === 0 ? await put('params', this.trainer.saveState()) : undefined;
    return { mine, params };
  }

  partNames(rank: number): string[] {
    const { hostOf, localOf } = this.s.layout;
    return hostOf[rank] === 0 ? [`rank${rank}`, `opt${localOf[rank]}`] : [`rank${rank}`];
  }

  layoutMeta(): Record<string, unknown> {
    const { hosts, perHost, hostOf, localOf } = this.s.layout;
    const layout: LayoutMeta = { kind: 'host', hosts, perHost, hostOf, localOf };
    return { layout };
  }

  memory(): RankMemory {
    return {
      params: 4 * this.total,
      grads: 4 * this.total,
      optimizer: this.s.opt.stateBytes(),
      powersgd: this.s.psgd.stateBytes(),
    };
  }

  growthUnit(): number {
    return this.s.layout.perHost;
  }

  async close(): Promise<void> {
    await Promise.all([this.s.host.close(), this.s.cross.close()]);
  }
}
