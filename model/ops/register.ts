// Registers a fused op as a tfjs kernel on every backend we run on, plus its gradient: one engine dispatch
// and one tape node however many TensorFlow kernels (native) or tfjs ops (wasm, cpu) it runs inside.
import * as tf from '@tensorflow/tfjs';
import { tfBackendNames } from '../tf-backend.ts';

export interface FusedOp {
  kernelName: string;
  /** The op's output(s) from its named inputs; runs untaped, inside a tidy. */
  forward(inputs: Record<string, tf.Tensor>, attrs: tf.NamedAttrMap): tf.Tensor | tf.Tensor[];
  /** Inputs the gradient reads, in this order, then the outputs flagged here. */
  inputsToSave?: string[];
  outputsToSave?: boolean[];
  /** One lazy gradient per input (called only for inputs that lead to a variable). */
  gradient(
    dy: tf.Tensor | tf.Tensor[],
    saved: tf.Tensor[],
    attrs: tf.NamedAttrMap,
  ): Record<string, () => tf.Tensor>;
}

export function registerOp(op: FusedOp): void {
  for (const backendName of tfBackendNames) {
    if (tf.getKernel(op.kernelName, backendName)) continue; // this module was loaded twice
    tf.registerKernel({
      kernelName: op.kernelName,
      backendName,
      kernelFunc: ({ inputs, attrs }) =>
        tf.tidy(() => op.forward(inputs as Record<string, tf.Tensor>, attrs ?? {})) as
          tf.TensorInfo | tf.TensorInfo[],
    });
  }
  if (tf.getGradient(op.kernelName)) return;
  tf.registerGradient({
    kernelName: op.kernelName,
    inputsToSave: op.inputsToSave,
    outputsToSave: op.outputsToSave,
    gradFunc: (dy, saved, attrs) => op.gradient(dy, saved, attrs),
  });
}
