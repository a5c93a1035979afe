// ReLU with a one-kernel gradient on the native backend (TensorFlow's ReluGrad) instead of tfjs's Step,
// which tfjs-node runs as six kernels. Other backends: the same values from a comparison and a product.
import * as tf from '@tensorflow/tfjs';
import { nativeOps } from './native.ts';
import { registerOp } from './register.ts';

const KERNEL = 'DalleRelu';

registerOp({
  kernelName: KERNEL,
  forward: ({ x }) => nativeOps()?.relu(x) ?? tf.relu(x),
  outputsToSave: [true],
  gradient: (dy, [y]) => ({
    x: () =>
      nativeOps()?.reluGrad(dy as tf.Tensor, y!) ?? (dy as tf.Tensor).mul(y!.greater(0).cast('float32')),
  }),
});

/** max(x, 0), elementwise. */
export function relu<T extends tf.Tensor>(x: T): T {
  return tf.engine().runKernel(KERNEL, { x }) as T;
}
