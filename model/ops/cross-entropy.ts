// Cross-entropy of logits [m, V] against int32 labels [m], per row: −log softmax(logits)[label].
//
// Native TensorFlow computes the loss and its gradient softmax − onehot in one kernel
// (SparseSoftmaxCrossEntropyWithLogits), rather than tfjs's log-softmax, one-hot product and their
// gradients (a dozen kernels over [m, V]). The op is one tape node (tf.customGrad) that saves the kernel's
// gradient for the backward pass, which only scales its rows: the kernel runs once per step, not twice.
// Other backends: log-softmax and a one-hot pick (no gather: wasm lacks its gradient), softmax − onehot
// in the backward pass.
import * as tf from '@tensorflow/tfjs';
import { nativeOps } from './native.ts';

function oneHot(labels: tf.Tensor, depth: number): tf.Tensor {
  // tfjs-backend-wasm 4.22's OneHot ignores a float32 dtype (writes int32 bits): build int32, cast.
  return tf.oneHot(labels as tf.Tensor1D, depth, 1, 0, 'int32').cast('float32');
}

const op = tf.customGrad((logitsIn, labelsIn, save) => {
  const [logits, labels] = [logitsIn as tf.Tensor2D, labelsIn as tf.Tensor1D];
  const n = nativeOps();
  let value: tf.Tensor;
  if (n) {
    const [loss, backprop] = n.sparseSoftmaxCrossEntropy(logits, labels);
    (save as (ts: tf.Tensor[]) => void)([backprop]);
    value = loss;
  } else {
    value = tf.logSoftmax(logits).mul(oneHot(labels, logits.shape[1]!)).sum(1).neg();
    (save as (ts: tf.Tensor[]) => void)([logits, labels]);
  }
  return {
    value,
    gradFunc: (dyIn: tf.Tensor, saved: tf.Tensor[]) =>
      tf.tidy(() => {
        const dy = dyIn.reshape([-1, 1]);
        const grad = n
          ? n.mul(saved[0]!, dy)
          : tf.softmax(saved[0]!).sub(oneHot(saved[1]!, saved[0]!.shape[1]!)).mul(dy);
        // Labels are integers: they have no gradient.
        return [grad, tf.zeros(labels.shape)];
      }),
  };
});

/** −log softmax(logits)[label] per row: logits [m, V], labels int32 [m] → [m]. */
export function softmaxCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Tensor1D {
  return op(logits, labels) as tf.Tensor1D;
}
