// Gumbel-softmax relaxation of the dVAE's categorical q(z|x) (docs/model.md):
//   y_i = softmax((log q_i + g_i) / τ),  g_i ~ Gumbel(0, 1)
// log q_i differs from the encoder logit by a per-cell constant, which softmax ignores, so the logits
// are used directly. Each sample's noise is keyed by (seed, step, its index in the step's global batch),
// never by rank: a sample gets the same noise whichever rank, world size or micro-batch computes it, so a
// run whose world size changes draws exactly the noise of a run that kept it.
import * as tf from '@tensorflow/tfjs';
import { RngStream, randomWords } from '../random/index.ts';

const TWO_POW_M32 = 2 ** -32;

/**
 * Gumbel(0, 1) noise for samples `first`, `first + 1`, … of step `step`'s global batch, shaped [n, ...cell]
 * like the logits it will perturb (n = shape[0]): −log(−log u) with u = (w + ½)/2³² from the counter-based
 * stream's words w of each sample, as `gumbels` in rng.ts defines it.
 *
 * The words come from JS (Philox); the two logarithms, which cost more than the words in JS (16 of
 * 28 ms for a shapes batch), run on the backend in float32. To keep float64's accuracy where u is
 * close to 1 (−log u ≈ 1 − u would cancel), JS hands over u itself when u < ½ and −(1 − u) otherwise,
 * each exact to float32 rounding; the backend takes −log u or −log1p(−(1 − u)) accordingly. The result
 * agrees with `gumbels` to a few float32 ulps.
 */
export function gumbelNoise(seed: number, step: number, first: number, shape: number[]): tf.Tensor {
  const [samples = 0, ...cell] = shape;
  const per = cell.reduce((a, b) => a * b, 1);
  const n = samples * per;
  const w = new Uint32Array(n);
  for (let j = 0; j < samples; j++)
    w.set(randomWords({ seed, stream: RngStream.gumbel, step, rank: first + j }, per), j * per);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const wi = w[i]!;
    x[i] = wi < 0x80000000 ? (wi + 0.5) * TWO_POW_M32 : -((0xffffffff - wi + 0.5) * TWO_POW_M32);
  }
  return tf.tidy(() => {
    const t = tf.tensor(x, shape, 'float32');
    const e = tf.where(t.greater(0), tf.log(t).neg(), log1p(t).neg()); // −log u
    return tf.log(e).neg();
  });
}

/** log(1 + x) for x in [−½, 0], accurate on every backend (tfjs-backend-wasm's Log1p is log(1 + x), which
 *  loses the digits of small x): log(y)·x/(y − 1) with y = 1 + x rounded, Goldberg's correction
 *  (y − 1 is exact here), and x itself where y rounds to 1. */
function log1p(x: tf.Tensor): tf.Tensor {
  if (tf.getBackend() !== 'wasm') return tf.log1p(x);
  const y = x.add(1);
  const d = y.sub(1);
  const tiny = d.equal(0);
  return tf.where(tiny, x, tf.log(y).mul(x.div(tf.where(tiny, tf.onesLike(d), d))));
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
