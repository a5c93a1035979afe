// A stage's training curves: rank 0's per-step figures (global loss, the schedules' lr, τ, β, the trainer's
// own terms, seconds per step, gradient bytes an uncompressed all-reduce would send and bytes sent) from
// step 1 to the checkpoint, stored with every checkpoint as part `curves`. Each checkpoint holds the whole
// history, so pruning older checkpoints loses nothing, and a relaunched segment continues the curve of the
// checkpoint it resumes from: after a restart the curve is exactly that of an uninterrupted run, minus the
// lost steps' timings.
import { packSections, unpackSections } from './sections.ts';

/** The part name of a checkpoint's curves. */
export const CURVES_PART = 'curves';

/** The step column's name in the stored blob. */
const STEP = 'step';
/** The blob's format, as its first section (the other sections are float32 columns). */
const FORMAT = 'curves.json';

/** A curves part that does not decode: its columns disagree in length, or a section is not float32s. */
export class CurvesFormatError extends Error {
  override name = 'CurvesFormatError';
}

const f32 = (b: Uint8Array) => {
  if (b.length % 4) throw new CurvesFormatError(`a curves column of ${b.length} bytes is not float32s`);
  // A copy (aligned, its own buffer): a Node Buffer's slice() would be a view into a shared pool.
  return new Float32Array(new Uint8Array(b).buffer);
};

export class RunCurves {
  private steps: number[] = [];
  private readonly series = new Map<string, number[]>();

  /** The curves of a stored part, cut after `upTo` (the step a segment resumes from). */
  static decode(bytes: Uint8Array, upTo = Infinity): RunCurves {
    const sections = unpackSections(bytes);
    const c = new RunCurves();
    const steps = f32(sections[STEP] ?? new Uint8Array());
    let n = steps.length;
    while (n > 0 && steps[n - 1]! > upTo) n--;
    c.steps = Array.from(steps.subarray(0, n));
    for (const [name, b] of Object.entries(sections)) {
      if (name === STEP || name === FORMAT) continue;
      const values = f32(b);
      if (values.length !== steps.length)
        throw new CurvesFormatError(
          `curves column '${name}' has ${values.length} values for ${steps.length} steps`,
        );
      c.series.set(name, Array.from(values.subarray(0, n)));
    }
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
    const col = (v: number[]) => new Uint8Array(Float32Array.from(v).buffer);
    return packSections({
      [FORMAT]: new TextEncoder().encode(JSON.stringify({ version: 1 })),
      [STEP]: col(this.steps),
      ...Object.fromEntries([...this.series].map(([name, v]) => [name, col(v)])),
    });
  }

  /** Columns for a chart: steps and one array per series (NaN where a series has no value). */
  toJSON(): { steps: number[]; series: Record<string, number[]> } {
    return { steps: [...this.steps], series: Object.fromEntries(this.series) };
  }
}
