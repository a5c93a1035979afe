// Which world size a run uses: one policy for the stage workflow (between segments) and rank 0 (at each
// checkpoint), so both decide alike. Pure functions of the spec and what was observed.
import type { RunSpec } from '../config/index.ts';
import { stageBatchSize, type StageName } from './activities.ts';

/** The world sizes a run (or one `stage` of it) may use: [elastic.min, elastic.max], or 1..batchSize
 *  without `train.elastic` (every rank needs a sample of the global batch; the rerank stage's may be its
 *  own, smaller one, and config keeps it ≥ elastic.min). */
export function worldSizeBounds(spec: RunSpec, stage?: StageName): { min: number; max: number } {
  const e = spec.train.elastic;
  const batch = stage ? stageBatchSize(spec, stage) : spec.train.batchSize;
  return e ? { min: e.min, max: Math.min(e.max, batch) } : { min: 1, max: batch };
}

/** A requested world size (setWorldSize) moved into the bounds; undefined if it is not a positive integer. */
export function clampWorldSize(spec: RunSpec, w: number, stage?: StageName): number | undefined {
  if (!(Number.isInteger(w) && w > 0)) return undefined;
  const { min, max } = worldSizeBounds(spec, stage);
  return Math.min(max, Math.max(min, w));
}

/** Rank 0 at a checkpoint: the world size to move to, or undefined to keep `current`. A size the stage
 *  was asked for (`wanted`, from setWorldSize) wins; otherwise an elastic run grows onto idle worker slots,
 *  up to elastic.max, in whole `unit`s (a sharded run's ranks per host: a host's worth of ranks at a time,
 *  so that every host keeps the same number). */
export function nextWorldSize(
  spec: RunSpec,
  current: number,
  wanted: number,
  idleSlots: number,
  unit = 1,
  stage?: StageName,
): number | undefined {
  if (wanted !== current) return wanted;
  if (!spec.train.elastic || idleSlots <= 0) return undefined;
  const room = Math.min(worldSizeBounds(spec, stage).max - current, idleSlots);
  const grown = current + unit * Math.floor(room / unit);
  return grown > current ? grown : undefined;
}

/** After a segment that some ranks never joined (no worker took them within train.joinTimeout): an
 *  elastic run shrinks to the ranks that did, never below elastic.min; any other run keeps its size and
 *  waits for workers. */
export function worldSizeAfterShortfall(spec: RunSpec, current: number, missing: number): number {
  if (!spec.train.elastic || missing <= 0) return current;
  return Math.max(spec.train.elastic.min, current - missing);
}
