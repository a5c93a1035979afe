// x·w + b for 2-D x [m, k], w [k, n], b [n] as one op: on native TensorFlow one fused kernel forward and
// MatMul, MatMul, BiasAddGrad backward, instead of tfjs's matMul (BatchMatMul between reshapes), Add and
// their gradients (a reduction and reshapes for the bias).
import * as tf from '@tensorflow/tfjs';
import { nativeOps } from './native.ts';
import { gelu } from './gelu.ts';
import { registerOp } from './register.ts';

const KERNEL = 'DalleDense';

registerOp({
  kernelName: KERNEL,
  forward: ({ x, w, b }) =>
    nativeOps()?.matMulBias(x, w, b) ?? tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D).add(b),
  inputsToSave: ['x', 'w'],
  gradient: (dyIn, [x, w]) => {
    const dy = dyIn as tf.Tensor2D;
    const n = nativeOps();
    return {
      x: () => n?.matMul(dy, w!, false, true) ?? tf.matMul(dy, w as tf.Tensor2D, false, true),
      w: () => n?.matMul(x!, dy, true, false) ?? tf.matMul(x as tf.Tensor2D, dy, true, false),
      b: () => n?.biasAddGrad(dy) ?? dy.sum(0),
    };
  },
});

/** x·w + b: x [m, k], w [k, n], b [n] → [m, n]. */
export function dense(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  return tf.engine().runKernel(KERNEL, { x, w, b }) as tf.Tensor2D;
}

/** gelu(x·w + b): where no gradient is recorded (sampling, evaluation) one oneDNN kernel on native
 *  TensorFlow, else the two ops. */
export function denseGelu(x: tf.Tensor2D, w: tf.Tensor, b: tf.Tensor): tf.Tensor2D {
  if (!tf.engine().isTapeOn()) {
    const y = nativeOps()?.matMulBiasGelu(x, w, b);
    if (y) return y as tf.Tensor2D;
  }
  return gelu(dense(x, w, b));
}
