// Cross-entropy of logits [m, V] against int32 labels [m], per row: −log softmax(logits)[label].
//
// Native TensorFlow computes the loss and its gradient softmax − onehot in one kernel
// (SparseSoftmaxCrossEntropyWithLogits); the backward pass runs it again and scales the rows, rather
// than tfjs's log-softmax, one-hot product and their gradients (a dozen kernels over [m, V]). Other
// backends: log-softmax and a one-hot pick (no gather: wasm lacks its gradient).
import * as tf from '@tensorflow/tfjs';
import { nativeOps } from './native.ts';
import { registerOp } from './register.ts';

const KERNEL = 'DalleSoftmaxCrossEntropy';

function oneHot(labels: tf.Tensor, depth: number): tf.Tensor {
  // tfjs-backend-wasm 4.22's OneHot ignores a float32 dtype (writes int32 bits): build int32, cast.
  return tf.oneHot(labels as tf.Tensor1D, depth, 1, 0, 'int32').cast('float32');
}

registerOp({
  kernelName: KERNEL,
  forward: ({ logits, labels }) => {
    const n = nativeOps();
    if (n) {
      const [loss, backprop] = n.sparseSoftmaxCrossEntropy(logits, labels);
      backprop.dispose();
      return loss;
    }
    return tf.logSoftmax(logits).mul(oneHot(labels, logits.shape[1]!)).sum(1).neg();
  },
  inputsToSave: ['logits', 'labels'],
  gradient: (dyIn, [logits, labels]) => ({
    logits: () => {
      const dy = (dyIn as tf.Tensor).reshape([-1, 1]);
      const n = nativeOps();
      if (n) {
        const [loss, backprop] = n.sparseSoftmaxCrossEntropy(logits!, labels!);
        loss.dispose();
        return n.mul(backprop, dy);
      }
      return tf.softmax(logits!).sub(oneHot(labels!, logits!.shape[1]!)).mul(dy);
    },
    labels: () => tf.zeros(labels!.shape),
  }),
});

/** −log softmax(logits)[label] per row: logits [m, V], labels int32 [m] → [m]. */
export function softmaxCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  return tf.engine().runKernel(KERNEL, { logits, labels }) as tf.Tensor1D;
}
