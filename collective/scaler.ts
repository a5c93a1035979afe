// Per-resblock gradient scales for the fp16 wire, by the paper's rule: start at W·2^13; ×2^(1/1000) per
// clean update; on Inf/NaN ÷√2 and skip the update, decreasing at most once per 125 updates; clamp to
// W·[2^7, 2^24]. Every rank applies the same rule to the same all-reduced overflow flags, so the scales
// stay identical everywhere without being exchanged.
import type { PowerSgdConfig } from '../config/index.ts';

export type ScalerConfig = Pick<
  PowerSgdConfig,
  'scaleInitLog2' | 'scaleMinLog2' | 'scaleMaxLog2' | 'scaleGrowthLog2' | 'scaleBackoffInterval'
>;

export interface ScalerState {
  scales: number[];
  /** Step of each group's last decrease, or null if never. */
  lastBackoff: (number | null)[];
}

export class WireScaler {
  readonly scales: Float64Array;
  readonly lastBackoff: (number | null)[];
  private readonly min: number;
  private readonly max: number;
  private readonly growth: number;

  constructor(
    readonly groups: number,
    worldSize: number,
    private readonly cfg: ScalerConfig,
  ) {
    this.min = worldSize * 2 ** cfg.scaleMinLog2;
    this.max = worldSize * 2 ** cfg.scaleMaxLog2;
    this.growth = 2 ** cfg.scaleGrowthLog2;
    this.scales = new Float64Array(groups).fill(this.clamp(worldSize * 2 ** cfg.scaleInitLog2));
    this.lastBackoff = new Array<number | null>(groups).fill(null);
  }

  private clamp(s: number): number {
    return Math.min(this.max, Math.max(this.min, s));
  }

  /** After a step: `overflow[g]` says whether group g saw Inf/NaN (anywhere, on any rank); `applied`
   *  whether the update happened (a clean update grows every group). */
  update(step: number, overflow: ArrayLike<boolean>, applied: boolean): void {
    for (let g = 0; g < this.groups; g++) {
      if (overflow[g]) {
        const last = this.lastBackoff[g];
        if (last === null || step - last >= this.cfg.scaleBackoffInterval) {
          this.scales[g] = this.clamp(this.scales[g]! / Math.SQRT2);
          this.lastBackoff[g] = step;
        }
      } else if (applied) {
        this.scales[g] = this.clamp(this.scales[g]! * this.growth);
      }
    }
  }

  state(): ScalerState {
    return { scales: Array.from(this.scales), lastBackoff: [...this.lastBackoff] };
  }

  restore(s: ScalerState): void {
    if (s.scales.length !== this.groups || s.lastBackoff.length !== this.groups) {
      throw new RangeError(`scaler state has ${s.scales.length} groups, expected ${this.groups}`);
    }
    this.scales.set(s.scales);
    for (let g = 0; g < this.groups; g++) this.lastBackoff[g] = s.lastBackoff[g]!;
  }
}
