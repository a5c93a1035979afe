// A stage's training curves: rank 0's per-step figures (global loss, the schedules' lr, τ, β, the trainer's
// own terms, seconds per step, gradient bytes an uncompressed all-reduce would send and bytes sent) from
// step 1 to the checkpoint, stored with every checkpoint as part `curves`. Each checkpoint holds the whole
// history, so pruning older checkpoints loses nothing, and a relaunched segment continues the curve of the
// checkpoint it resumes from: after a restart the curve is exactly that of an uninterrupted run, minus the
// lost steps' timings.
import { decodeState, encodeState } from '../model/index.ts';

/** The part name of a checkpoint's curves. */
export const CURVES_PART = 'curves';

/** The step column's name in the stored blob. */
const STEP = 'step';

export class RunCurves {
  private steps: number[] = [];
  private readonly series = new Map<string, number[]>();

  /** The curves of a stored part, cut after `upTo` (the step a segment resumes from). */
  static decode(bytes: Uint8Array, upTo = Infinity): RunCurves {
    const { arrays } = decodeState(Buffer.isBuffer(bytes) ? new Uint8Array(bytes) : bytes);
    const c = new RunCurves();
    const steps = arrays.get(STEP) ?? new Float32Array();
    let n = steps.length;
    while (n > 0 && steps[n - 1]! > upTo) n--;
    c.steps = Array.from(steps.subarray(0, n));
    for (const [name, values] of arrays)
      if (name !== STEP) c.series.set(name, Array.from(values.subarray(0, n)));
    return c;
  }

  get length(): number {
    return this.steps.length;
  }

  /** Appends one step's figures; a series first seen now reads NaN for the steps before it. */
  record(step: number, values: Record<string, number>): void {
    const i = this.steps.length;
    this.steps.push(step);
    for (const [name, v] of Object.entries(values)) {
      if (name === STEP || typeof v !== 'number') continue;
      let s = this.series.get(name);
      if (!s) this.series.set(name, (s = new Array<number>(i).fill(NaN)));
      s.push(v);
    }
    for (const s of this.series.values()) if (s.length === i) s.push(NaN);
  }

  /** Sets one figure of the newest step (e.g. what its checkpoint's work took, known only after the step). */
  annotate(step: number, name: string, value: number): void {
    const i = this.steps.length - 1;
    if (this.steps[i] !== step)
      throw new RangeError(`annotate: step ${step} is not the newest (${this.steps[i]})`);
    let s = this.series.get(name);
    if (!s) this.series.set(name, (s = new Array<number>(this.steps.length).fill(NaN)));
    s[i] = value;
  }

  encode(): Uint8Array {
    return encodeState({ version: 1 }, [
      [STEP, Float32Array.from(this.steps)],
      ...[...this.series].map(([name, v]) => [name, Float32Array.from(v)] as const),
    ]);
  }

  /** Columns for a chart: steps and one array per series (NaN where a series has no value). */
  toJSON(): { steps: number[]; series: Record<string, number[]> } {
    return { steps: [...this.steps], series: Object.fromEntries(this.series) };
  }
}
