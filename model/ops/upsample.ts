// Nearest-neighbour ×2 upsampling of NHWC activations (every pixel repeated 2×2).
//
// Native backend: TensorFlow's ResizeNearestNeighbor and its gradient (each source pixel sums its 2×2
// block), one kernel each way. Other backends: a broadcast product with ones, whose gradient is a plain
// sum that every backend has (tfjs-backend-wasm lacks the resize gradient).
import * as tf from '@tensorflow/tfjs';
import { nativeOps } from './native.ts';
import { registerOp } from './register.ts';

const KERNEL = 'DalleUpsample2x';

function broadcastUp(x: tf.Tensor): tf.Tensor {
  const [n, h, w, c] = x.shape as [number, number, number, number];
  return x
    .reshape([n, h, 1, w, 1, c])
    .mul(tf.ones([1, 1, 2, 1, 2, 1]))
    .reshape([n, 2 * h, 2 * w, c]);
}

registerOp({
  kernelName: KERNEL,
  forward: ({ x }) => {
    const n = nativeOps();
    return n ? n.resizeNearest(x, 2 * x.shape[1]!, 2 * x.shape[2]!) : broadcastUp(x);
  },
  inputsToSave: [],
  gradient: (dy) => ({
    x: () => {
      const d = dy as tf.Tensor;
      const [b, h2, w2, c] = d.shape as [number, number, number, number];
      const n = nativeOps();
      if (n) return n.resizeNearestGrad(d, h2 / 2, w2 / 2);
      return d.reshape([b, h2 / 2, 2, w2 / 2, 2, c]).sum([2, 4]);
    },
  }),
});

/** [N, H, W, C] → [N, 2H, 2W, C], each pixel repeated 2×2. */
export function upsample2x(x: tf.Tensor4D): tf.Tensor4D {
  return tf.engine().runKernel(KERNEL, { x }) as tf.Tensor4D;
}
