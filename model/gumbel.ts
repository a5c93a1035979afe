// Gumbel-softmax relaxation of the dVAE's categorical q(z|x) (PAPER.md):
//   y_i = softmax((log q_i + g_i) / τ),  g_i ~ Gumbel(0, 1)
// log q_i differs from the encoder logit by a per-cell constant, which softmax ignores, so the logits
// are used directly. Each sample's noise is keyed by (seed, step, its index in the step's global batch),
// never by rank: a sample gets the same noise whichever rank, world size or micro-batch computes it, so a
// run whose world size changes draws exactly the noise of a run that kept it.
import * as tf from '@tensorflow/tfjs';
import { RngStream, gumbels } from '../random/index.ts';

/** Gumbel(0, 1) noise for samples `first`, `first + 1`, … of step `step`'s global batch, shaped
 *  [n, ...cell] like the logits it will perturb (n = shape[0]). */
export function gumbelNoise(seed: number, step: number, first: number, shape: number[]): tf.Tensor {
  const [n = 0, ...cell] = shape;
  const per = cell.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n * per);
  for (let j = 0; j < n; j++)
    out.set(gumbels({ seed, stream: RngStream.gumbel, step, rank: first + j }, per), j * per);
  return tf.tensor(out, shape, 'float32');
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
