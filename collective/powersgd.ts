// PowerSGD (Vogels et al. 2019) as DALL-E used it between machines (docs/model.md, Distributed training), with
// torch powerSGD_hook's startIter / minCompressionRate / warm start. One step, per compressed matrix M
// (n×m, m ≤ n), on every rank:
//
//   1. all-reduce #1 'grads': every uncompressed gradient (fp32) + one non-finite flag per parameter
//   2. M ← e + g               gradients accumulate into the error buffer itself (no separate buffer)
//      any flag set anywhere → skip the step on every rank; zero only the error buffers that went non-finite
//   3. Q [m, r]: warm start (last step's Q̄) or random from (seed, step); orthonormalized
//   4. P = M·Q                 all P's in one all-reduce #2 'p' (mean, wire format, per-resblock fp16 scale)
//   5. P̂ = householder(P + εI)
//   6. Q_w = Mᵀ·P̂             all Q's in one all-reduce #3 'q' → Q̄
//   7. grad = P̂·Q̄ᵀ (the mean over ranks, identical bits everywhere); e ← M − P̂·Q_wᵀ (what this rank's
//      own message did not carry, including its fp16 rounding)
//
// Non-finite P̂ or Q̄ (an fp16 overflow) also skips the step; the error buffers then keep all of M (nothing
// was transmitted), and the scaler backs off the groups that overflowed.
import { PowerSgdConfig } from '../config/index.ts';
import type { ParamSpec } from '../model/index.ts';
import { CollectiveArgumentError, GradientShapeError, PowerSgdStateError } from './errors.ts';
import { roundTripFp16 } from './fp16.ts';
import { fillGaussian, GAUSSIAN_GENERATOR } from '../random/index.ts';
import type { Group, GroupCounters } from './group.ts';
import { orthonormalize } from './householder.ts';
import { mulGtY, mulGX, mulLRt, subLRt } from './low-rank.ts';
import { planCompression, resblockOf, type CompressionPlan, type ParamPlan } from './powersgd-plan.ts';
import { decodeState, encodeState } from './powersgd-state.ts';
import { WireScaler, type ScalerState } from './scaler.ts';

export interface PowerSgdOptions {
  /** This process's rank; its error buffers are its own. */
  rank: number;
  worldSize: number;
  /** Run seed: the random Q of a step is a pure function of (seed, step, parameter), equal on all ranks. */
  seed: number;
  /** fp16 scale groups (default: the resblock in the parameter's name, else the parameter). */
  scaleGroupOf?: (spec: ParamSpec) => string;
}

/** What one reduce cost and did, for metrics and logs. */
export interface ReduceStats {
  /** 'plain': one fp32 all-reduce of everything (before startIter, or disabled); 'powersgd': compressed. */
  mode: 'plain' | 'powersgd';
  /** fp32 bytes of all gradients: what a plain all-reduce carries. */
  bytesRaw: number;
  /** Gradient bytes this step all-reduced (uncompressed fp32 + P + Q in the wire format). */
  bytesSent: number;
  /** 1 − bytesSent / bytesRaw. */
  compressionRate: number;
  /** Bytes of the non-finite flags that rode along (one float per parameter). */
  controlBytes: number;
  /** Messages this rank published (chunks and resends). */
  chunks: number;
  /** Payload bytes this rank published: reduce-scatter + all-gather + resends. */
  wireBytesOut: number;
  /** Chunks resent for peers that lost them. */
  resent: number;
  /** Wall time of the whole reduce; the part spent waiting for all-reduces (communication not hidden
   *  behind the compression math, which runs while the first all-reduce is in flight); the rest. */
  ms: number;
  exposedCommMs: number;
  computeMs: number;
  skipped: boolean;
  /** Smallest fp16 scale after the step (fp16 wire only). */
  minScale?: number;
}

export interface ReduceResult {
  /** Averaged (decompressed) gradients in spec order; all zeros when skipped (never apply them). */
  grads: Float32Array[];
  /** The `extras` given to reduce, summed over ranks (rank order, fp32). */
  extras: Float32Array;
  /** A non-finite value somewhere (any rank's gradient, or an fp16 overflow): no rank applies this step. */
  skipped: boolean;
  /** Parameters whose gradient was non-finite on some rank (empty unless skipped). */
  nonFinite: string[];
  stats: ReduceStats;
}

export interface PowerSgdCounters {
  steps: number;
  plainSteps: number;
  compressedSteps: number;
  skippedSteps: number;
  /** Error buffers zeroed because they held non-finite values. */
  zeroedErrorBuffers: number;
  bytesRaw: number;
  bytesSent: number;
}

/** The JSON header of a saved PowerSGD state (see saveState). */
export interface PowerSgdStateMeta {
  kind: 'powersgd';
  rank: number;
  worldSize: number;
  seed: number;
  generator: string;
  config: {
    rank: number;
    warmStart: boolean;
    errorFeedback: boolean;
    wire: string;
    minCompressionRate: number;
  };
  params: { name: string; shape: number[]; compressed: boolean; r: number }[];
  scaler: ScalerState;
  counters: PowerSgdCounters;
}

export interface LoadStateOptions {
  /** Accept error buffers saved by another rank or world size (e.g. after the world size changed). */
  allowRankChange?: boolean;
}

const freshCounters = (): PowerSgdCounters => ({
  steps: 0,
  plainSteps: 0,
  compressedSteps: 0,
  skippedSteps: 0,
  zeroedErrorBuffers: 0,
  bytesRaw: 0,
  bytesSent: 0,
});

function allFinite(a: Float32Array): boolean {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * 0; // ±Inf·0 and NaN·0 are NaN
  return s === 0;
}

/** One reduce call's clock and traffic: its all-reduces start and are waited for here. */
class CallMeter {
  readonly t0 = performance.now();
  readonly c0: GroupCounters;
  /** Time spent waiting for all-reduces: communication the step could not hide. */
  commMs = 0;
  /** Gradient bytes all-reduced (wire format). */
  bytesSent = 0;

  constructor(
    readonly group: Group,
    readonly step: number,
  ) {
    this.c0 = group.counters();
  }

  /** Starts an all-reduce; in place (no allocation) for buffers nobody reads afterwards. */
  start(
    buf: Float32Array,
    tag: string,
    average: boolean,
    wire: 'fp32' | 'fp16',
    gradientBytes: number,
    inPlace = true,
  ): Promise<Float32Array> {
    this.bytesSent += gradientBytes;
    return this.group.allReduce(buf, { step: this.step, tag, average, wire, inPlace });
  }

  async wait(p: Promise<Float32Array>): Promise<Float32Array> {
    const t = performance.now();
    const out = await p;
    this.commMs += performance.now() - t;
    return out;
  }
}

/** What the steps of one reduce call share. */
interface ReduceCall {
  meter: CallMeter;
  compress: boolean;
  fp16: boolean;
  /** The averaged gradients, in spec order, filled as the call goes. */
  outGrads: Float32Array<ArrayBuffer>[];
  /** The extras summed over ranks (known after the first all-reduce). */
  extras: Float32Array;
  /** Parameters whose gradient was non-finite on some rank. */
  badAnywhere: ParamPlan[];
}

export class PowerSgd {
  readonly cfg: PowerSgdConfig;
  readonly plan: CompressionPlan;
  readonly rank: number;
  readonly worldSize: number;
  readonly seed: number;
  private readonly specs: ParamSpec[];
  private readonly compressed: ParamPlan[];
  private errors: (Float32Array | undefined)[];
  private qMemory: (Float32Array | undefined)[];
  private scaler: WireScaler;
  private stats: PowerSgdCounters = freshCounters();

  constructor(specs: ParamSpec[], cfg: PowerSgdConfig | Partial<PowerSgdConfig>, opts: PowerSgdOptions) {
    const parsed = PowerSgdConfig.safeParse(cfg ?? {});
    if (!parsed.success) {
      const i = parsed.error.issues[0]!;
      throw new CollectiveArgumentError(
        `powersgd.${i.path.join('.')}`,
        (cfg as Record<string, unknown>)?.[String(i.path[0])],
        i.message,
      );
    }
    this.cfg = parsed.data;
    if (!opts || !Number.isInteger(opts.worldSize) || opts.worldSize < 1)
      throw new CollectiveArgumentError('worldSize', opts?.worldSize, 'must be an integer ≥ 1');
    if (!Number.isInteger(opts.rank) || opts.rank < 0 || opts.rank >= opts.worldSize)
      throw new CollectiveArgumentError('rank', opts.rank, `must be an integer in [0, ${opts.worldSize})`);
    if (!Number.isInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff)
      throw new CollectiveArgumentError('seed', opts.seed, 'must be a uint32');
    this.rank = opts.rank;
    this.worldSize = opts.worldSize;
    this.seed = opts.seed;
    this.specs = specs;
    this.plan = planCompression(specs, this.cfg, opts.scaleGroupOf ?? resblockOf);
    this.compressed = this.plan.params.filter((p) => p.compressed);
    this.errors = new Array<Float32Array | undefined>(specs.length);
    this.qMemory = new Array<Float32Array | undefined>(specs.length);
    this.scaler = new WireScaler(this.plan.scaleGroups.length, this.worldSize, this.cfg);
  }

  /** Cumulative counters since construction or the loaded checkpoint. */
  counters(): PowerSgdCounters {
    return { ...this.stats };
  }

  /** The error buffer of a parameter (undefined if it is not compressed or has not been used yet). */
  errorBuffer(name: string): Float32Array | undefined {
    const i = this.plan.params.findIndex((p) => p.name === name);
    return i >= 0 ? this.errors[i] : undefined;
  }

  /** Bytes of state this rank holds across steps: error buffers and warm-start Q. */
  stateBytes(): number {
    let n = 0;
    for (const a of [...this.errors, ...this.qMemory]) n += a?.byteLength ?? 0;
    return n;
  }

  /** The current fp16 scale of each group (by group name). */
  scales(): Record<string, number> {
    return Object.fromEntries(this.plan.scaleGroups.map((g, i) => [g, this.scaler.scales[i]!]));
  }

  private checkInputs(group: Group, grads: Float32Array[], step: number): void {
    if (!group || typeof group.allReduce !== 'function')
      throw new CollectiveArgumentError('group', group, 'must be a Group from joinGroup');
    if (group.worldSize !== this.worldSize || group.rank !== this.rank) {
      throw new CollectiveArgumentError(
        'group',
        `rank ${group.rank} of ${group.worldSize}`,
        `does not match this PowerSgd (rank ${this.rank} of ${this.worldSize})`,
      );
    }
    if (!Number.isInteger(step) || step < 0)
      throw new CollectiveArgumentError('step', step, 'must be an integer ≥ 0');
    if (!Array.isArray(grads) || grads.length !== this.plan.params.length) {
      throw new CollectiveArgumentError(
        'grads',
        Array.isArray(grads) ? `${grads.length} arrays` : grads,
        `must be ${this.plan.params.length} Float32Arrays in paramSpecs order`,
      );
    }
    for (const p of this.plan.params) {
      const g = grads[p.index];
      if (!(g instanceof Float32Array))
        throw new GradientShapeError(
          p.name,
          p.numel,
          g === null || g === undefined ? String(g) : (g as object).constructor.name,
        );
      if (g.length !== p.numel) throw new GradientShapeError(p.name, p.numel, g.length);
    }
  }

  /** Averages `grads` (in spec order, not modified) over the group. Every rank calls it with the same step.
   *  `extras` (e.g. the step's loss) ride along in the first all-reduce and come back summed over ranks:
   *  one message round instead of another all-reduce. */
  async reduce(
    group: Group,
    grads: Float32Array[],
    step: number,
    extras: Float32Array = new Float32Array(0),
  ): Promise<ReduceResult> {
    this.checkInputs(group, grads, step);
    const params = this.plan.params;
    const localBad = params.map((p) => !allFinite(grads[p.index]!));
    const compress = this.cfg.enabled && step >= this.cfg.startIter && this.compressed.length > 0;
    const call: ReduceCall = {
      meter: new CallMeter(group, step),
      compress,
      fp16: compress && this.cfg.wire === 'fp16',
      outGrads: params.map((p) => new Float32Array(p.numel)),
      extras: new Float32Array(0),
      badAnywhere: [],
    };
    const { meter, fp16 } = call;

    // 1. the grouped fp32 all-reduce: uncompressed gradients (all of them in plain mode), flags, extras
    const carried = compress ? params.filter((p) => !p.compressed) : params;
    const first = this.packFirst(grads, carried, localBad, extras);
    const inFlight = meter.start(first.buf, 'grads', false, 'fp32', first.flagsAt * 4);
    // Let its chunks leave (the collective publishes from microtasks), then do the work that does not
    // need its result while it is in flight: the error feedback and P = M·Q below.
    await new Promise<void>((resolve) => setImmediate(resolve));
    // 2. error feedback: gradients accumulate into the error buffers
    const M = compress ? this.accumulateErrors(grads) : [];
    // 3. P = M·Q for every compressed matrix (used only if no rank's gradient was bad)
    const pPlan = compress ? this.computeP(M, step, fp16) : undefined;

    const sum1 = await meter.wait(inFlight);
    call.badAnywhere = params.filter((p) => sum1[first.flagsAt + p.index]! > 0);
    call.extras = sum1.slice(first.extrasAt);
    this.unpackCarried(sum1, carried, call.outGrads);
    if (call.badAnywhere.length) {
      this.dropContaminatedErrors(localBad);
      const bad = new Set(call.badAnywhere.map((p) => p.index));
      return this.finish(
        call,
        true,
        this.overflow((p) => bad.has(p.index)),
      );
    }
    if (!compress) return this.finish(call, false, []);

    // 4. the P's (computed above, while all-reduce #1 was in flight), one all-reduce
    const { buf: pBuf, offsets: pOff } = pPlan!;
    const pAvg = await meter.wait(
      meter.start(pBuf, 'p', true, this.cfg.wire, pBuf.length * this.plan.wireBytesPerElem),
    );
    const pBad = this.compressed.filter(
      (p) => !allFinite(pAvg.subarray(pOff[p.index]!, pOff[p.index]! + p.n * p.r)),
    );
    if (pBad.length)
      return this.finish(
        call,
        true,
        this.overflow((p) => pBad.includes(p)),
      );

    // 5-6. P̂ = householder(P + εI); Q_w = Mᵀ·P̂, one all-reduce
    const q = this.computeQ(pAvg, pOff, M, fp16);
    // not in place: this rank's own Q_w (q.buf) is needed below for the error feedback
    const qAvg = await meter.wait(
      meter.start(q.buf, 'q', true, this.cfg.wire, q.buf.length * this.plan.wireBytesPerElem, false),
    );
    const qBad = this.compressed.filter(
      (p) => !allFinite(qAvg.subarray(q.offsets[p.index]!, q.offsets[p.index]! + p.m * p.r)),
    );
    if (qBad.length)
      return this.finish(
        call,
        true,
        this.overflow((p) => qBad.includes(p)),
      );

    // 7. decompress (the mean), and keep what this rank's message did not carry
    this.decompress(qAvg, q, M, fp16, call.outGrads);
    return this.finish(
      call,
      false,
      this.overflow(() => false),
    );
  }

  /** The first all-reduce's buffer: the carried gradients back to back, one non-finite flag per
   *  parameter (at `flagsAt`), then the extras (at `extrasAt`). */
  private packFirst(
    grads: Float32Array[],
    carried: ParamPlan[],
    localBad: boolean[],
    extras: Float32Array,
  ): { buf: Float32Array; flagsAt: number; extrasAt: number } {
    const params = this.plan.params;
    const flagsAt = carried.reduce((s, p) => s + p.numel, 0);
    const extrasAt = flagsAt + params.length;
    const buf = new Float32Array(extrasAt + extras.length);
    let off = 0;
    for (const p of carried) {
      buf.set(grads[p.index]!, off);
      off += p.numel;
    }
    for (const p of params) buf[flagsAt + p.index] = localBad[p.index] ? 1 : 0;
    buf.set(extras, extrasAt);
    return { buf, flagsAt, extrasAt };
  }

  /** The carried gradients' sums over ranks, averaged, into their outputs. */
  private unpackCarried(sum: Float32Array, carried: ParamPlan[], outGrads: Float32Array[]): void {
    const W = this.worldSize;
    let off = 0;
    for (const p of carried) {
      const o = outGrads[p.index]!;
      for (let i = 0; i < p.numel; i++) o[i] = sum[off + i]! / W;
      off += p.numel;
    }
  }

  /** M of every compressed matrix: its error buffer plus the gradient (error feedback), or a copy of the
   *  gradient without it. */
  private accumulateErrors(grads: Float32Array[]): Float32Array[] {
    const M: Float32Array[] = [];
    for (const p of this.compressed) {
      const g = grads[p.index]!;
      if (this.cfg.errorFeedback) {
        const e = (this.errors[p.index] ??= new Float32Array(p.numel));
        for (let i = 0; i < e.length; i++) e[i]! += g[i]!;
        M[p.index] = e;
      } else {
        M[p.index] = Float32Array.from(g);
      }
    }
    return M;
  }

  /** After a skipped step: zeroes the error buffers this rank's own non-finite gradients contaminated. */
  private dropContaminatedErrors(localBad: boolean[]): void {
    for (const p of this.compressed) {
      const e = this.errors[p.index];
      if (e && localBad[p.index] && !allFinite(e)) {
        e.fill(0);
        this.stats.zeroedErrorBuffers++;
      }
    }
  }

  /** The fp16 scale groups that overflowed: those holding a matrix for which `bad` holds. */
  private overflow(bad: (p: ParamPlan) => boolean): boolean[] {
    const g = new Array<boolean>(this.plan.scaleGroups.length).fill(false);
    for (const p of this.compressed) if (bad(p)) g[p.scaleGroup] = true;
    return g;
  }

  /** P̂ = householder(P̄ + εI) of every compressed matrix, and this rank's Q_w = Mᵀ·P̂ side by side in one
   *  buffer (scaled and rounded to what an fp16 wire carries), with where each starts. */
  private computeQ(
    pAvg: Float32Array,
    pOff: number[],
    M: Float32Array[],
    fp16: boolean,
  ): { buf: Float32Array; offsets: number[]; Phat: Float32Array[] } {
    const Phat: Float32Array[] = [];
    const buf = new Float32Array(this.plan.qElems);
    const offsets: number[] = [];
    let off = 0;
    for (const p of this.compressed) {
      const P = pAvg.slice(pOff[p.index]!, pOff[p.index]! + p.n * p.r);
      for (let i = 0; i < p.r; i++) P[i * p.r + i]! += this.cfg.epsilon;
      const ph = orthonormalize(P, p.n, p.r);
      Phat[p.index] = ph;
      const Qw = p.transposed
        ? mulGX(M[p.index]!, p.rows, p.cols, ph, p.r)
        : mulGtY(M[p.index]!, p.rows, p.cols, ph, p.r);
      const s = fp16 ? this.scaler.scales[p.scaleGroup]! : 1;
      if (s !== 1) for (let i = 0; i < Qw.length; i++) Qw[i]! *= s;
      if (fp16) roundTripFp16(Qw); // the error below must see exactly what was sent
      buf.set(Qw, off);
      offsets[p.index] = off;
      off += Qw.length;
    }
    return { buf, offsets, Phat };
  }

  /** The averaged gradient P̂·Q̄ᵀ of every compressed matrix into `outGrads`; with error feedback, what
   *  this rank's own message carried (P̂·Q_wᵀ) leaves its error buffer; with warm start, Q̄ is kept. */
  private decompress(
    qAvg: Float32Array,
    q: { buf: Float32Array; offsets: number[]; Phat: Float32Array[] },
    M: Float32Array[],
    fp16: boolean,
    outGrads: Float32Array<ArrayBuffer>[],
  ): void {
    for (const p of this.compressed) {
      const s = fp16 ? this.scaler.scales[p.scaleGroup]! : 1;
      const len = p.m * p.r;
      const Qbar = qAvg.slice(q.offsets[p.index]!, q.offsets[p.index]! + len);
      const Qw = q.buf.slice(q.offsets[p.index]!, q.offsets[p.index]! + len);
      if (s !== 1) {
        for (let i = 0; i < len; i++) {
          Qbar[i]! /= s;
          Qw[i]! /= s;
        }
      }
      const ph = q.Phat[p.index]!;
      if (p.transposed) mulLRt(Qbar, ph, p.rows, p.cols, p.r, outGrads[p.index]);
      else mulLRt(ph, Qbar, p.rows, p.cols, p.r, outGrads[p.index]);
      if (this.cfg.errorFeedback) {
        if (p.transposed) subLRt(M[p.index]!, Qw, ph, p.rows, p.cols, p.r);
        else subLRt(M[p.index]!, ph, Qw, p.rows, p.cols, p.r);
      }
      if (this.cfg.warmStart) this.qMemory[p.index] = Qbar;
    }
  }

  /** The call's result and counters; a skipped step returns zero gradients. */
  private finish(call: ReduceCall, skipped: boolean, overflowGroups: boolean[]): ReduceResult {
    const { meter, compress, fp16, outGrads, badAnywhere } = call;
    if (fp16) this.scaler.update(meter.step, overflowGroups, !skipped);
    const ms = performance.now() - meter.t0;
    const c1 = meter.group.counters();
    this.stats.steps++;
    if (compress) this.stats.compressedSteps++;
    else this.stats.plainSteps++;
    if (skipped) this.stats.skippedSteps++;
    this.stats.bytesRaw += this.plan.bytesRaw;
    this.stats.bytesSent += meter.bytesSent;
    if (skipped) for (const o of outGrads) o.fill(0);
    return {
      grads: outGrads,
      extras: call.extras,
      skipped,
      nonFinite: badAnywhere.map((p) => p.name),
      stats: {
        mode: compress ? 'powersgd' : 'plain',
        bytesRaw: this.plan.bytesRaw,
        bytesSent: meter.bytesSent,
        compressionRate: this.plan.bytesRaw ? 1 - meter.bytesSent / this.plan.bytesRaw : 0,
        controlBytes: this.plan.params.length * 4,
        chunks: c1.msgsOut - meter.c0.msgsOut,
        wireBytesOut: c1.bytesOut - meter.c0.bytesOut,
        resent: c1.resent - meter.c0.resent,
        ms,
        exposedCommMs: meter.commMs,
        computeMs: ms - meter.commMs,
        skipped,
        minScale: fp16 ? Math.min(...this.scaler.scales) : undefined,
      },
    };
  }

  /** P = M·Q of every compressed matrix, side by side in one buffer (scaled into fp16 range on an fp16
   *  wire), and where each starts. A pure function of M, the step and the scales. */
  private computeP(M: Float32Array[], step: number, fp16: boolean): { buf: Float32Array; offsets: number[] } {
    const buf = new Float32Array(this.plan.pElems);
    const offsets: number[] = [];
    let off = 0;
    for (const p of this.compressed) {
      const Q = this.startQ(p, step);
      const P = p.transposed
        ? mulGtY(M[p.index]!, p.rows, p.cols, Q, p.r)
        : mulGX(M[p.index]!, p.rows, p.cols, Q, p.r);
      const s = fp16 ? this.scaler.scales[p.scaleGroup]! : 1;
      if (s !== 1) for (let i = 0; i < P.length; i++) P[i]! *= s;
      buf.set(P, off);
      offsets[p.index] = off;
      off += P.length;
    }
    return { buf, offsets };
  }

  /** Q [m, r], orthonormal: last step's mean Q (warm start) or fresh from (seed, step, parameter). */
  private startQ(p: ParamPlan, step: number): Float32Array {
    const mem = this.cfg.warmStart ? this.qMemory[p.index] : undefined;
    const Q = mem
      ? Float32Array.from(mem)
      : fillGaussian(new Float32Array(p.m * p.r), this.seed, step, p.index);
    return orthonormalize(Q, p.m, p.r);
  }

  /** This rank's error buffers, warm-start Q, scaler state and counters (the RNG is a pure function of
   *  seed and step: its state is the seed). */
  saveState(): Uint8Array {
    const meta: PowerSgdStateMeta = {
      kind: 'powersgd',
      rank: this.rank,
      worldSize: this.worldSize,
      seed: this.seed,
      generator: GAUSSIAN_GENERATOR,
      config: {
        rank: this.cfg.rank,
        warmStart: this.cfg.warmStart,
        errorFeedback: this.cfg.errorFeedback,
        wire: this.cfg.wire,
        minCompressionRate: this.cfg.minCompressionRate,
      },
      params: this.plan.params.map((p) => ({
        name: p.name,
        shape: p.shape,
        compressed: p.compressed,
        r: p.r,
      })),
      scaler: this.scaler.state(),
      counters: this.counters(),
    };
    const arrays: [string, Float32Array][] = [];
    for (const p of this.compressed) {
      const e = this.errors[p.index];
      if (e) arrays.push([`error/${p.name}`, e]);
      const q = this.qMemory[p.index];
      if (q) arrays.push([`q/${p.name}`, q]);
    }
    return encodeState(meta, arrays);
  }

  /** Restores what saveState wrote, exactly; `undefined` resets to a fresh start. Throws
   *  PowerSgdStateError naming the mismatch (other parameters, rank, seed, rank r, corrupt bytes). */
  loadState(bytes?: Uint8Array, opts: LoadStateOptions = {}): void {
    if (bytes === undefined) {
      this.errors = new Array<Float32Array | undefined>(this.specs.length);
      this.qMemory = new Array<Float32Array | undefined>(this.specs.length);
      this.scaler = new WireScaler(this.plan.scaleGroups.length, this.worldSize, this.cfg);
      this.stats = freshCounters();
      return;
    }
    const { meta, arrays } = decodeState<PowerSgdStateMeta>(bytes);
    const fail = (reason: string) => new PowerSgdStateError(reason, bytes.length);
    if (meta?.kind !== 'powersgd') throw fail('not a PowerSGD state');
    if (meta.generator !== GAUSSIAN_GENERATOR)
      throw fail(`random generator ${meta.generator}, this build uses ${GAUSSIAN_GENERATOR}`);
    if (meta.seed !== this.seed) throw fail(`saved with seed ${meta.seed}, this run uses ${this.seed}`);
    if (!opts.allowRankChange && (meta.rank !== this.rank || meta.worldSize !== this.worldSize)) {
      throw fail(
        `error buffers of rank ${meta.rank} of ${meta.worldSize}, this is rank ${this.rank} of ${this.worldSize} (pass allowRankChange to accept)`,
      );
    }
    if (meta.params.length !== this.plan.params.length)
      throw fail(`${meta.params.length} parameters saved, ${this.plan.params.length} expected`);
    for (const p of this.plan.params) {
      const s = meta.params[p.index]!;
      if (s.name !== p.name || s.shape.join('x') !== p.shape.join('x'))
        throw fail(
          `parameter ${p.index} is ${s.name} [${s.shape.join(', ')}], expected ${p.name} [${p.shape.join(', ')}]`,
        );
      if (s.compressed !== p.compressed || s.r !== p.r)
        throw fail(
          `${p.name} was saved ${s.compressed ? `compressed at rank ${s.r}` : 'uncompressed'}, this config ${p.compressed ? `compresses it at rank ${p.r}` : 'does not compress it'}`,
        );
    }
    const errors = new Array<Float32Array | undefined>(this.specs.length);
    const qMemory = new Array<Float32Array | undefined>(this.specs.length);
    for (const p of this.compressed) {
      const e = arrays.get(`error/${p.name}`);
      if (e) {
        if (e.length !== p.numel)
          throw fail(`error buffer of ${p.name} has ${e.length} values, expected ${p.numel}`);
        errors[p.index] = Float32Array.from(e);
      }
      const q = arrays.get(`q/${p.name}`);
      if (q && this.cfg.warmStart) {
        if (q.length !== p.m * p.r)
          throw fail(`Q of ${p.name} has ${q.length} values, expected ${p.m * p.r}`);
        qMemory[p.index] = Float32Array.from(q);
      }
    }
    const scaler = new WireScaler(this.plan.scaleGroups.length, this.worldSize, this.cfg);
    try {
      scaler.restore(meta.scaler);
    } catch (e) {
      throw fail((e as Error).message);
    }
    this.errors = errors;
    this.qMemory = qMemory;
    this.scaler = scaler;
    this.stats = { ...freshCounters(), ...meta.counters };
  }
}
