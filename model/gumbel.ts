// Gumbel-softmax relaxation of the dVAE's categorical q(z|x) (PAPER.md):
//   y_i = softmax((log q_i + g_i) / τ),  g_i ~ Gumbel(0, 1)
// log q_i differs from the encoder logit by a per-cell constant, which softmax ignores, so the logits
// are used directly. The noise is a pure function of (seed, step, rank): see rng.ts.
import * as tf from '@tensorflow/tfjs';
import { RngStream, gumbels } from '../random/index.ts';

/** Gumbel(0, 1) noise for one rank's step, shaped like the logits it will perturb. */
export function gumbelNoise(seed: number, step: number, rank: number, shape: number[]): tf.Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  return tf.tensor(gumbels({ seed, stream: RngStream.gumbel, step, rank }, n), shape, 'float32');
}

/** softmax((logits + noise) / τ) over the last axis. */
export function gumbelSoftmax(logits: tf.Tensor, noise: tf.Tensor, tau: number): tf.Tensor {
  if (!(tau > 0)) throw new RangeError(`Gumbel-softmax temperature must be > 0, got ${tau}`);
  return tf.tidy(() => tf.softmax(logits.add(noise).div(tau)));
}

/** KL(q ‖ uniform over K) per cell, from logits over the last axis: Σ q log q + log K. */
export function klToUniform(logits: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const logQ = tf.logSoftmax(logits);
    const k = logits.shape[logits.shape.length - 1]!;
    return logQ.exp().mul(logQ).sum(-1).add(Math.log(k));
  });
}
