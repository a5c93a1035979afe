// Gumbel-softmax relaxation of the dVAE's categorical q(z|x) (docs/model.md):
//   y_i = softmax((log q_i + g_i) / τ),  g_i ~ Gumbel(0, 1)
// log q_i differs from the encoder logit by a per-cell constant, which softmax ignores, so the logits
// are used directly. Each sample's noise is keyed by (seed, step, its index in the step's global batch),
// never by rank: a sample gets the same noise whichever rank, world size or micro-batch computes it, so a
// run whose world size changes draws exactly the noise of a run that kept it.
import * as tf from '@tensorflow/tfjs';
import { RngStream, statelessSeed, statelessWords } from '../random/index.ts';
import { nativeOps } from './ops/native.ts';

const TWO_POW_M25 = 2 ** -25;

/**
 * Gumbel(0, 1) noise for samples `first`, `first + 1`, … of step `step`'s global batch, shaped [n, ...cell]
 * like the logits it will perturb (n = shape[0]): −log(−log u) with u = (k + ½)/2^24 for the top 24 bits k
 * of each of the sample's words, as `gumbels` in random/philox.ts defines it.
 *
 * The words are TensorFlow's stateless Philox stream for the sample's seed pair (`statelessWords`): on the
 * native backend its own kernel draws them (one call per sample) and integer ops turn them into u; on the
 * others JS draws the same words. Either way u reaches the logarithms as x, exact in float32: u itself
 * when u < ½ and −(1 − u) otherwise, x = ((w >> 7) | 1) / 2^25 for the word w as an int32. The backend
 * takes −log x or −log1p(x) accordingly (1 − u never cancels), so the result agrees with `gumbels` to a
 * few float32 ulps on every backend.
 */
export function gumbelNoise(seed: number, step: number, first: number, shape: number[]): tf.Tensor {
  const [samples = 0, ...cell] = shape;
  const per = cell.reduce((a, b) => a * b, 1);
  const keys = Array.from({ length: samples }, (_, j) => ({
    seed,
    stream: RngStream.gumbel,
    step,
    rank: first + j,
  }));
  const native = nativeOps();
  return tf.tidy(() => {
    let t: tf.Tensor;
    if (native && samples > 0 && per > 0) {
      const words = native.statelessWords(keys.map(statelessSeed), per);
      t = native.shiftRightOdd(words, 7).toFloat().mul(TWO_POW_M25).reshape(shape);
    } else {
      const x = new Float32Array(samples * per);
      keys.forEach((key, j) => {
        const w = new Int32Array(statelessWords(key, per).buffer);
        for (let i = 0; i < per; i++) x[j * per + i] = ((w[i]! >> 7) | 1) * TWO_POW_M25;
      });
      t = tf.tensor(x, shape, 'float32');
    }
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
