// GELU in the tanh form (GPT-2's), gelu(x) = ½·x·(1 + tanh(u)), u = c·(x + k·x³), c = √(2/π), k = 0.044715,
// computed as x·σ(v) with v = 2u = x·(α + β·x²), α = 2c, β = 2c·k (½·(1 + tanh(u)) = σ(2u): the same
// function, one kernel fewer to form it and two fewer to apply it). Its gradient, with s = σ(v), a = x²:
//   gelu'(x) = s + x·s·(1 − s)·(α + 3β·a)
// One op with that hand-derived gradient. The autodiff of the plain formula cost a Pow and its gradient
// (another Pow and a Log): 10 ms per [2560, 256] call on native TensorFlow against 0.1 ms for a Mul. On
// native TensorFlow the forward pass is six elementwise kernels and the backward seven (SigmoidGrad among
// them): each is a pass over the tensor at memory speed, which a second thread does not speed up, so the
// count is what matters (the tanh form took eight and ten).
import * as tf from '@tensorflow/tfjs';
import { nativeOps } from './native.ts';

const C = Math.sqrt(2 / Math.PI);
const ALPHA = 2 * C;
const BETA = 2 * C * 0.044715;

/** gelu(x), with a = x² and s = σ(v) for the backward pass, on native TensorFlow or with tfjs ops. */
function forward(x: tf.Tensor): { y: tf.Tensor; a: tf.Tensor; s: tf.Tensor } {
  const n = nativeOps();
  if (n) {
    const a = n.square(x);
    const s = n.sigmoid(n.mul(x, n.shift(n.scale(a, BETA), ALPHA)));
    return { y: n.mul(x, s), a, s };
  }
  const a = x.square();
  const s = tf.sigmoid(x.mul(a.mul(BETA).add(ALPHA)));
  return { y: x.mul(s), a, s };
}

/** ∂x from dy and the forward's x, a and s. */
function gradient(dy: tf.Tensor, x: tf.Tensor, a: tf.Tensor, s: tf.Tensor): tf.Tensor {
  const n = nativeOps();
  if (n) {
    const viaS = n.mul(n.sigmoidGrad(s, n.mul(dy, x)), n.shift(n.scale(a, 3 * BETA), ALPHA));
    return n.add(n.mul(dy, s), viaS);
  }
  const viaS = dy
    .mul(x)
    .mul(s.mul(s.neg().add(1)))
    .mul(a.mul(3 * BETA).add(ALPHA));
  return dy.mul(s).add(viaS);
}

// One tape node (tf.customGrad) that saves x, a and s for the backward pass, which then recomputes
// neither the square nor the sigmoid.
const op = tf.customGrad((xIn, save) => {
  const x = xIn as tf.Tensor;
  const { y, a, s } = forward(x);
  (save as (ts: tf.Tensor[]) => void)([x, a, s]);
  return {
    value: y,
    gradFunc: (dy: tf.Tensor, [xS, aS, sS]: tf.Tensor[]) => tf.tidy(() => gradient(dy, xS!, aS!, sS!)),
  };
});

/** GELU (tanh form), elementwise. */
export function gelu<T extends tf.Tensor>(x: T): T {
  return op(x) as T;
}
