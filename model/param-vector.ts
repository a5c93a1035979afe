// A trainer's parameters as ONE float32 variable θ, in `ParamSpec` order.
//
// Why one vector: the optimizer then updates every parameter with a dozen kernels instead of a dozen per
// parameter (the dVAE has 66 parameters, the shapes transformer 59), the gradient comes back as one flat
// tensor (one download, already the flat buffer the all-reduce sends), and checkpoints slice it by name
// as before. The model sees ordinary parameter-shaped tensors: `tensors()` splits θ inside the gradient
// tape, so each parameter's gradient lands on θ as one concatenated gradient.
import * as tf from '@tensorflow/tfjs';
import { nativeOps } from './ops/native.ts';
import { registerOp } from './ops/register.ts';
import type { ParamSpec } from './trainer.ts';

/** Arrays that do not match the parameter list (count or sizes). */
export class ParamVectorError extends Error {
  override name = 'ParamVectorError';
  constructor(readonly problems: string[]) {
    super(`parameter arrays do not match:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

const KERNEL = 'DalleUnflatten';

// θ → parameter-shaped tensors in one kernel (SplitV plus a reshape per multi-axis parameter, issued
// directly on the native backend); the gradient reassembles the parameters' gradients into θ's shape.
registerOp({
  kernelName: KERNEL,
  forward: ({ theta }, attrs) => {
    const shapes = attrs.shapes as number[][];
    const sizes = shapes.map((s) => s.reduce((a, b) => a * b, 1));
    const n = nativeOps();
    const parts = n ? n.splitV(theta, sizes) : tf.split(theta, sizes);
    return parts.map((p, i) =>
      shapes[i]!.length === 1 ? p : n ? n.reshape(p, shapes[i]!) : p.reshape(shapes[i]!),
    );
  },
  gradient: (dys) => ({
    theta: () => {
      const parts = Array.isArray(dys) ? dys : [dys]; // a one-parameter model has a single output
      const n = nativeOps();
      const flat = parts.map((d) => (d.rank === 1 ? d : n ? n.reshape(d, [d.size]) : d.reshape([d.size])));
      return n ? n.concat(flat) : tf.concat(flat);
    },
  }),
});

export class ParamVector {
  readonly theta: tf.Variable;
  readonly specs: readonly ParamSpec[];
  /** Elements per parameter, and where each starts in θ. */
  readonly sizes: readonly number[];
  readonly offsets: readonly number[];
  readonly total: number;
  private readonly shapes: number[][];

  constructor(specs: readonly ParamSpec[], values: readonly Float32Array[], name: string) {
    this.specs = specs.map((s) => ({ ...s, shape: [...s.shape] }));
    this.shapes = this.specs.map((s) => s.shape);
    this.sizes = this.shapes.map((s) => s.reduce((a, b) => a * b, 1));
    let at = 0;
    this.offsets = this.sizes.map((n) => ((at += n), at - n));
    this.total = at;
    const flat = this.pack(values);
    this.theta = tf.tidy(() => tf.variable(tf.tensor1d(flat, 'float32'), true, name));
  }

  /** θ as parameter-shaped tensors, in spec order (differentiable: their gradients land on θ). */
  tensors(): tf.Tensor[] {
    return tf.engine().runKernel(KERNEL, { theta: this.theta }, { shapes: this.shapes }) as tf.Tensor[];
  }

  /** The current values, one download: views of one fresh buffer, in spec order. */
  arrays(): Float32Array[] {
    return this.views((this.theta.dataSync() as Float32Array).slice());
  }

  /** Per-parameter views of a flat [total] buffer (no copy). */
  views(flat: Float32Array): Float32Array[] {
    if (flat.length !== this.total)
      throw new ParamVectorError([`flat buffer has ${flat.length} values, expected ${this.total}`]);
    return this.sizes.map((n, i) => flat.subarray(this.offsets[i]!, this.offsets[i]! + n));
  }

  /** One flat buffer of per-parameter arrays; zero-copy when they are already consecutive views of one. */
  pack(values: readonly Float32Array[]): Float32Array {
    const problems: string[] = [];
    if (values.length !== this.specs.length)
      problems.push(`${values.length} arrays for ${this.specs.length} parameters`);
    else
      values.forEach((v, i) => {
        if (!(v instanceof Float32Array)) problems.push(`${this.specs[i]!.name} is not a Float32Array`);
        else if (v.length !== this.sizes[i])
          problems.push(`${this.specs[i]!.name} has ${v.length} values, expected ${this.sizes[i]}`);
      });
    if (problems.length > 0) throw new ParamVectorError(problems);
    const first = values[0];
    if (
      first &&
      values.every(
        (v, i) => v.buffer === first.buffer && v.byteOffset === first.byteOffset + 4 * this.offsets[i]!,
      )
    )
      return new Float32Array(first.buffer, first.byteOffset, this.total);
    const out = new Float32Array(this.total);
    values.forEach((v, i) => out.set(v, this.offsets[i]!));
    return out;
  }

  /** Overwrites θ with per-parameter arrays in spec order. */
  assign(values: readonly Float32Array[]): void {
    const flat = this.pack(values);
    tf.tidy(() => this.theta.assign(tf.tensor1d(flat, 'float32')));
  }

  dispose(): void {
    this.theta.dispose();
  }
}
