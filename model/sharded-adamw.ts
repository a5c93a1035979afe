// One rank's shard of AdamW when parameters are sharded within a host (ZeRO-1/2): the moments and EMA of
// the pieces of each parameter this rank owns, and the update of exactly those elements. The other ranks
// of the host own the other pieces; the updated pieces are all-gathered into full parameters before the
// next forward (activities/sharded-runtime.ts). Memory per rank: 3 × (parameters / ranks per host) floats
// instead of 3 × parameters.
//
// Per element it is adamw.ts's update, operation by operation in float32 (every intermediate rounded with
// Math.fround, which is the correctly rounded float32 result for +, −, ×, ÷ and √), so a shard computes
// what the unsharded optimizer computes for the same elements:
//   m ← β1·m + (1−β1)·g        v ← β2·v + (1−β2)·g²
//   p ← p·(1 − lr·wd) where decay is on;  p ← p − (m / (√v/√bc2 + ε))·(lr/bc1);  ema ← d·ema + (1−d)·p
import { decodeState, encodeState, StateMismatchError } from './state-io.ts';
import type { UpdateRule } from './trainer.ts';

const f = Math.fround;

/** The elements [offset, offset + length) of parameter `index` (flattened, row-major). */
export interface ParamPiece {
  index: number;
  name: string;
  offset: number;
  length: number;
}

interface ShardMeta {
  kind: 'adamw-shard';
  updates: number;
  pieces: ParamPiece[];
}

export interface ShardStepResult {
  /** The pieces' new values, in `pieces` order. */
  params: Float32Array[];
  /** Updates applied so far, this one included. */
  updates: number;
}

export class ShardedAdamW {
  /** This shard's pieces of the parameters: the values its updates start from. */
  private values: Float32Array[];
  private m: Float32Array[];
  private v: Float32Array[];
  private ema: Float32Array[];
  private t = 0;

  /** `params`: the full parameters (spec order); this shard keeps its pieces of them, and its EMA starts
   *  there. */
  constructor(
    readonly pieces: readonly ParamPiece[],
    params: readonly Float32Array[],
  ) {
    this.values = pieces.map((p) => params[p.index]!.slice(p.offset, p.offset + p.length));
    this.m = pieces.map((p) => new Float32Array(p.length));
    this.v = pieces.map((p) => new Float32Array(p.length));
    this.ema = this.values.map((x) => x.slice());
  }

  get updates(): number {
    return this.t;
  }

  /** Bytes of optimizer state this rank holds: m, v, EMA and its pieces of the parameters. */
  stateBytes(): number {
    return 4 * 4 * this.pieces.reduce((n, p) => n + p.length, 0);
  }

  /** Σ g² over this shard's gradient pieces (float64, fixed order): the caller sums it over the host. */
  static sumSquares(grads: readonly Float32Array[]): number {
    let s = 0;
    for (const g of grads) for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
    return s;
  }

  /** One update of this shard: `grads` are its averaged gradient pieces (in `pieces` order), `gradScale`
   *  the global-norm clip factor (1: none). */
  apply(grads: readonly Float32Array[], rule: UpdateRule, gradScale = 1): ShardStepResult {
    this.t += 1;
    const bc1 = 1 - rule.beta1 ** this.t;
    const bc2 = 1 - rule.beta2 ** this.t;
    const [b1, b2, ob1, ob2] = [f(rule.beta1), f(rule.beta2), f(1 - rule.beta1), f(1 - rule.beta2)];
    const [step, eps, invSqrtBc2, scale] = [
      f(rule.lr / bc1),
      f(rule.eps),
      f(1 / Math.sqrt(bc2)),
      f(gradScale),
    ];
    const [decay, d, od] = [f(1 - rule.lr * rule.weightDecay), f(rule.emaDecay), f(1 - rule.emaDecay)];
    const out = this.pieces.map((p, k) => {
      const g = grads[k]!;
      const [m, v, ema, next] = [this.m[k]!, this.v[k]!, this.ema[k]!, this.values[k]!];
      const decays = rule.decay[p.index]! && rule.weightDecay > 0;
      for (let i = 0; i < p.length; i++) {
        const gi = gradScale === 1 ? g[i]! : f(g[i]! * scale);
        m[i] = f(f(m[i]! * b1) + f(gi * ob1));
        v[i] = f(f(v[i]! * b2) + f(f(gi * gi) * ob2));
        const denom = f(f(f(Math.sqrt(v[i]!)) * invSqrtBc2) + eps);
        let x = next[i]!;
        if (decays) x = f(x * decay);
        x = f(x - f(f(m[i]! / denom) * step));
        next[i] = x;
        ema[i] = f(f(ema[i]! * d) + f(x * od));
      }
      return next.slice();
    });
    return { params: out, updates: this.t };
  }

  /** This shard's own arrays, per piece (in `pieces` order): the parameter values its updates start
   *  from, the moments and the EMA. A rewrite from outside (dead-code restarts) writes into them. */
  arrays(): { values: Float32Array[]; m: Float32Array[]; v: Float32Array[]; ema: Float32Array[] } {
    return { values: this.values, m: this.m, v: this.v, ema: this.ema };
  }

  /** The EMA pieces (in `pieces` order). */
  emaPieces(): Float32Array[] {
    return this.ema.map((e) => e.slice());
  }

  /** This shard's state as one checkpoint part. */
  saveState(): Uint8Array {
    const meta: ShardMeta = { kind: 'adamw-shard', updates: this.t, pieces: [...this.pieces] };
    const arrays: [string, Float32Array][] = [];
    this.pieces.forEach((p, k) => {
      arrays.push([`${p.name}.m`, this.m[k]!], [`${p.name}.v`, this.v[k]!], [`${p.name}.ema`, this.ema[k]!]);
    });
    return encodeState(meta as unknown as Record<string, unknown>, arrays);
  }

  /** Restores this shard from saved shard parts of any piece layout (the ranks per host may have
   *  changed): every element of every piece must be covered by the parts given. The parameter values
   *  come from `params` (the checkpoint's full parameters). */
  loadState(parts: readonly Uint8Array[], params: readonly Float32Array[]): void {
    const saved = parts.map((b) => decodeShard(b));
    const updates = saved[0]?.meta.updates;
    if (updates === undefined || saved.some((s) => s.meta.updates !== updates))
      throw new StateMismatchError([`optimizer shards disagree on the update count or none was given`]);
    const fill = (which: 'm' | 'v' | 'ema') =>
      this.pieces.map((p) => {
        const out = new Float32Array(p.length);
        let covered = 0;
        for (const s of saved)
          for (const q of s.meta.pieces) {
            if (q.name !== p.name) continue;
            const from = Math.max(p.offset, q.offset);
            const to = Math.min(p.offset + p.length, q.offset + q.length);
            if (to <= from) continue;
            const a = s.arrays.get(`${q.name}.${which}`)!;
            out.set(a.subarray(from - q.offset, to - q.offset), from - p.offset);
            covered += to - from;
          }
        if (covered !== p.length)
          throw new StateMismatchError([
            `${p.name}[${p.offset}, +${p.length}) is not covered by the optimizer shards`,
          ]);
        return out;
      });
    [this.m, this.v, this.ema] = [fill('m'), fill('v'), fill('ema')];
    this.values = this.pieces.map((p) => params[p.index]!.slice(p.offset, p.offset + p.length));
    this.t = updates;
  }
}

/** Decodes one shard part; the arrays of a piece must have the piece's length. */
export function decodeShard(bytes: Uint8Array): { meta: ShardMeta; arrays: Map<string, Float32Array> } {
  const plain = Buffer.isBuffer(bytes) ? new Uint8Array(bytes) : bytes;
  const { meta, arrays } = decodeState<ShardMeta>(plain);
  if (meta?.kind !== 'adamw-shard')
    throw new StateMismatchError([`not an optimizer shard (${String(meta?.kind)})`]);
  for (const p of meta.pieces)
    for (const w of ['m', 'v', 'ema'])
      if (arrays.get(`${p.name}.${w}`)?.length !== p.length)
        throw new StateMismatchError([
          `optimizer shard array ${p.name}.${w} does not have ${p.length} values`,
        ]);
  return { meta, arrays };
}

/** Full EMA parameters assembled from the shard parts of one checkpoint (what publishing and encoding
 *  use): `numel[i]` elements for parameter i. */
export function assembleEma(parts: readonly Uint8Array[], numel: readonly number[]): Float32Array[] {
  const out = numel.map((n) => new Float32Array(n));
  const covered = numel.map(() => 0);
  for (const bytes of parts) {
    const { meta, arrays } = decodeShard(bytes);
    for (const p of meta.pieces) {
      out[p.index]!.set(arrays.get(`${p.name}.ema`)!, p.offset);
      covered[p.index]! += p.length;
    }
  }
  const short = covered.findIndex((c, i) => c !== numel[i]);
  if (short >= 0)
    throw new StateMismatchError([
      `parameter ${short} has ${covered[short]} of ${numel[short]} EMA values in the shards`,
    ]);
  return out;
}
