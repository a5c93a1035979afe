// Stage 2's learning-rate schedule (docs/model.md): linear warm-up to the peak over `warmupSteps` updates,
// then halved each time the training loss plateaus, at most `plateauHalvings` times (paper: 5, so the
// final lr is 32× smaller), and, when `cooldownSteps` > 0, scaled linearly down to zero over the last
// `cooldownSteps` updates before `steps` (a fixed budget's cool-down; the paper has none). The paper does
// not state its plateau test; ours, explicitly:
//
//   1. Non-finite losses (skipped updates) are ignored.
//   2. The watched loss is s ← β·s + (1 − β)·loss (β = plateauSmoothing; the first loss seeds s), so
//      batch noise alone does not look like progress or like a plateau.
//   3. During warm-up the clock does not run: best ← s, bestStep ← step at every update.
//   4. Afterwards an update improves when s < best − plateauThreshold·|best|: then best ← s, bestStep ← step.
//   5. Otherwise, when step − bestStep ≥ plateauPatience and fewer than plateauHalvings halvings happened:
//      halve (halvings += 1) and restart the clock from here (best ← s, bestStep ← step), so the lower
//      lr gets a full patience window before the next halving.
//
// The state is a plain object: it is part of a checkpoint (an exact resume continues the same clock),
// and every function here is pure.
import type { TransformerConfig } from '../config/index.ts';

export type PlateauConfig = Pick<
  TransformerConfig,
  | 'lr'
  | 'warmupSteps'
  | 'plateauPatience'
  | 'plateauThreshold'
  | 'plateauHalvings'
  | 'plateauSmoothing'
  | 'steps'
  | 'cooldownSteps'
>;

export interface PlateauState {
  /** EMA of the training loss; null before the first finite loss. */
  smoothed: number | null;
  /** Lowest smoothed loss since the clock last restarted. */
  best: number;
  /** Update at which `best` was set (the plateau clock counts from here). */
  bestStep: number;
  /** Halvings so far; lr = peak · 2^−halvings after warm-up. */
  halvings: number;
}

export function initialPlateauState(): PlateauState {
  return { smoothed: null, best: Number.POSITIVE_INFINITY, bestStep: 0, halvings: 0 };
}

/** A step that is not a non-negative integer. */
export class ScheduleStepError extends Error {
  override name = 'ScheduleStepError';
  constructor(readonly step: number) {
    super(`schedule step must be a non-negative integer, got ${step}`);
  }
}

function checkStep(step: number): void {
  if (!Number.isInteger(step) || step < 0) throw new ScheduleStepError(step);
}

/** Learning rate of update `step` (0-based): peak·(step+1)/warmupSteps during warm-up, then peak·2^−halvings,
 *  times (steps − step)/cooldownSteps over the cool-down (never below 0, past `steps` included). */
export function lrAt(cfg: PlateauConfig, state: PlateauState, step: number): number {
  checkStep(step);
  const warm = cfg.warmupSteps > 0 ? Math.min(1, (step + 1) / cfg.warmupSteps) : 1;
  const cd = cfg.cooldownSteps ?? 0;
  const cool = cd > 0 ? Math.min(1, Math.max(0, (cfg.steps - step) / cd)) : 1;
  return cfg.lr * warm * cool * 2 ** -state.halvings;
}

/** The state after observing the training loss of update `step` (rules 1–5 above). */
export function observeLoss(
  cfg: PlateauConfig,
  state: PlateauState,
  step: number,
  loss: number,
): PlateauState {
  checkStep(step);
  if (!Number.isFinite(loss)) return state;
  const beta = cfg.plateauSmoothing;
  const smoothed = state.smoothed === null ? loss : beta * state.smoothed + (1 - beta) * loss;
  if (step < cfg.warmupSteps) return { ...state, smoothed, best: smoothed, bestStep: step };
  // No finite best yet (warmupSteps = 0): the first observation sets it.
  if (!Number.isFinite(state.best) || smoothed < state.best - cfg.plateauThreshold * Math.abs(state.best)) {
    return { ...state, smoothed, best: smoothed, bestStep: step };
  }
  if (step - state.bestStep >= cfg.plateauPatience && state.halvings < cfg.plateauHalvings) {
    return { smoothed, best: smoothed, bestStep: step, halvings: state.halvings + 1 };
  }
  return { ...state, smoothed };
}
