// The dVAE's three schedules, as docs/model.md states them, each a pure function of the update index:
//   β  (KL weight)            cosine 0 → 6.6 over the first 5,000 updates
//   τ  (Gumbel temperature)   cosine 1 → 1/16 over the first 150,000 updates (linear diverged)
//   lr (step size)            cosine 1e-4 → 1.25e-6 over 1,200,000 updates (optionally warmed up linearly)
// then constant at the end value. Config fields scale them (the `paper-12b` preset holds the paper's).
import type { DvaeConfig } from '../config/index.ts';

/** A step argument that is not a finite number ≥ 0. */
export class ScheduleStepError extends Error {
  override name = 'ScheduleStepError';
  constructor(readonly step: number) {
    super(`schedule step must be a finite number ≥ 0, got ${step}`);
  }
}

/** Half-cosine from `start` (step 0) to `end` (step ≥ `steps`); exact at both ends. */
export function cosineAnneal(step: number, start: number, end: number, steps: number): number {
  if (!(Number.isFinite(step) && step >= 0)) throw new ScheduleStepError(step);
  if (step >= steps) return end;
  if (step === 0) return start;
  return start + ((end - start) * (1 - Math.cos((Math.PI * step) / steps))) / 2;
}

type BetaFields = Pick<DvaeConfig, 'betaMax' | 'betaWarmupSteps'>;
type TauFields = Pick<DvaeConfig, 'tauStart' | 'tauEnd' | 'tauDecaySteps'>;
type LrFields = Pick<DvaeConfig, 'lr' | 'lrEnd' | 'lrDecaySteps' | 'lrWarmupSteps'>;

/** KL weight β at `step`: cosine 0 → betaMax over betaWarmupSteps. */
export function betaAt(step: number, cfg: BetaFields): number {
  return cosineAnneal(step, 0, cfg.betaMax, cfg.betaWarmupSteps);
}

/** Gumbel-softmax temperature τ at `step`: cosine tauStart → tauEnd over tauDecaySteps. */
export function tauAt(step: number, cfg: TauFields): number {
  return cosineAnneal(step, cfg.tauStart, cfg.tauEnd, cfg.tauDecaySteps);
}

/** Learning rate at `step`: cosine lr → lrEnd over lrDecaySteps, times (step+1)/lrWarmupSteps during the
 *  warm-up. */
export function lrAt(step: number, cfg: LrFields): number {
  const lr = cosineAnneal(step, cfg.lr, cfg.lrEnd, cfg.lrDecaySteps);
  const warmup = cfg.lrWarmupSteps ?? 0;
  return step < warmup ? (lr * (step + 1)) / warmup : lr;
}
