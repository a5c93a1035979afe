// PowerSGD state across a change of group: the world size changed (elastic), hosts came or went (the
// sharded layout), or the shard a rank owns moved. Error buffers are re-sharded, never reset.
//
// Why re-shard. Everything PowerSGD transmits is linear in the ranks' matrices: P̄ = mean_i(M_i)·Q and
// Q̄ = mean_i(M_iᵀ)·P̂, so the decompressed gradient is a function of mean_i(M_i) = mean_i(e_i) + mean_i(g_i)
// alone. The error buffers matter to training only through their mean: what compression has owed the
// model so far. Dropping them (a reset) would silently lose that debt, which the paper's scheme never
// does (error buffers are zeroed only when non-finite, and survive restarts in checkpoints). Keeping the
// mean keeps the next step's update exactly what it would have been, whatever the new group size:
// every new member starts from the old members' mean error, so the new mean equals the old mean.
//
// A state covers a piece of each parameter (the whole parameter in the flat layout; a row block of it in
// the sharded one): the mean is taken element-wise over the states that cover each element, and each new
// member takes the slice its own piece covers. The warm-start Q survives where the new piece is exactly an
// old one (every member of a group holds the same Q̄); the fp16 scales survive when the scale groups are
// unchanged, rescaled to the new group size (they are proportional to it); counters carry on.
import { decodeState, encodeState } from './powersgd-state.ts';
import type { PowerSgd, PowerSgdStateMeta } from './powersgd.ts';
import { PowerSgdStateError } from './errors.ts';

/** Where a state's piece of each parameter lies within the full (flattened) parameter, by name. */
export type PieceMap = ReadonlyMap<string, { offset: number; length: number }>;

export interface SavedPowerSgdState {
  bytes: Uint8Array;
  /** The pieces its error buffers cover (omitted: whole parameters, the flat layout). */
  pieces?: PieceMap;
}

export interface ReshardTarget {
  /** A PowerSgd of the new member, as constructed (its plan says what it compresses). */
  psgd: PowerSgd;
  /** Its pieces (omitted: whole parameters). */
  pieces?: PieceMap;
  /** Elements of each full parameter, by name. */
  numel: ReadonlyMap<string, number>;
}

/** A state for `target` that carries the old states' mean error (see the file header); load it with
 *  `target.psgd.loadState`. Throws PowerSgdStateError if a state is corrupt or of another run. */
export function reshardPowerSgdState(saved: SavedPowerSgdState[], target: ReshardTarget): Uint8Array {
  const template = decodeState<PowerSgdStateMeta>(target.psgd.saveState()).meta;
  const old = saved.map((s) => ({ ...decodeState<PowerSgdStateMeta>(s.bytes), pieces: s.pieces }));
  for (const o of old) {
    if (o.meta?.kind !== 'powersgd') throw new PowerSgdStateError('not a PowerSGD state', 0);
    if (o.meta.seed !== template.seed)
      throw new PowerSgdStateError(`saved with seed ${o.meta.seed}, this run uses ${template.seed}`, 0);
  }
  const whole = (name: string) => ({ offset: 0, length: target.numel.get(name) ?? 0 });
  const pieceOf = (pieces: PieceMap | undefined, name: string) => pieces?.get(name) ?? whole(name);

  // Element-wise mean over the states covering each element, per parameter that any state compressed.
  const sums = new Map<string, { sum: Float32Array; count: Uint16Array }>();
  for (const o of old) {
    for (const p of o.meta.params) {
      if (!p.compressed) continue;
      const full = target.numel.get(p.name);
      if (full === undefined) throw new PowerSgdStateError(`parameter ${p.name} is not in this model`, 0);
      const piece = pieceOf(o.pieces, p.name);
      let acc = sums.get(p.name);
      if (!acc) sums.set(p.name, (acc = { sum: new Float32Array(full), count: new Uint16Array(full) }));
      const e = o.arrays.get(`error/${p.name}`); // absent: nothing owed yet (zeros)
      for (let i = 0; i < piece.length; i++) {
        if (e) acc.sum[piece.offset + i]! += e[i]!;
        acc.count[piece.offset + i]!++;
      }
    }
  }

  const arrays: [string, Float32Array][] = [];
  for (const p of template.params) {
    if (!p.compressed) continue;
    const piece = pieceOf(target.pieces, p.name);
    const acc = sums.get(p.name);
    if (acc && old.some((o) => o.arrays.has(`error/${p.name}`))) {
      const e = new Float32Array(piece.length);
      for (let i = 0; i < piece.length; i++) {
        const c = acc.count[piece.offset + i]!;
        e[i] = c ? acc.sum[piece.offset + i]! / c : 0;
      }
      arrays.push([`error/${p.name}`, e]);
    }
    const same = old.find((o) => {
      const q = pieceOf(o.pieces, p.name);
      return q.offset === piece.offset && q.length === piece.length && o.arrays.has(`q/${p.name}`);
    });
    const q = same?.arrays.get(`q/${p.name}`);
    if (q) arrays.push([`q/${p.name}`, Float32Array.from(q)]);
  }

  const first = old[0]?.meta;
  const meta: PowerSgdStateMeta = { ...template };
  if (first) {
    meta.counters = { ...first.counters };
    if (first.scaler.scales.length === template.scaler.scales.length) {
      const ratio = template.worldSize / first.worldSize;
      meta.scaler = {
        scales: first.scaler.scales.map((s) => s * ratio),
        lastBackoff: [...first.scaler.lastBackoff],
      };
    }
  }
  return encodeState(meta, arrays);
}
