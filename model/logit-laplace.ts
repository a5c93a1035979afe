// The dVAE's pixel likelihood (docs/model.md, "logit-Laplace"): pixels are squeezed into [ε, 1−ε] by
//   φ(x) = (1 − 2ε)·x/255 + ε
// so their logit stays finite, and each channel has density
//   f(x | μ, b) = exp(−|logit(x) − μ| / b) / (2b · x(1 − x))      on (0, 1)
// with μ and ln b predicted by the decoder. The reconstruction is x̂ = φ⁻¹(sigmoid(μ)).
import * as tf from '@tensorflow/tfjs';

/** uint8-valued pixels (any float tensor in [0, 255]) → φ(x) in [ε, 1−ε]. */
export function mapPixels(x255: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() => x255.mul((1 - 2 * eps) / 255).add(eps));
}

/** φ⁻¹ back to [0, 1] (clipped: sigmoid(μ) may leave [ε, 1−ε]). */
export function unmapPixels(x: tf.Tensor, eps: number): tf.Tensor {
  return tf.tidy(() =>
    x
      .sub(eps)
      .div(1 - 2 * eps)
      .clipByValue(0, 1),
  );
}

/** −log f(x | μ, b) per element; x already mapped by φ, lnB = ln b. All [B, H, W, 3]. */
export function logitLaplaceNll(x: tf.Tensor, mu: tf.Tensor, lnB: tf.Tensor): tf.Tensor {
  return tf.tidy(() => {
    const logitX = x.log().sub(tf.scalar(1).sub(x).log());
    // |logit(x) − μ|/b + ln b + ln 2 + ln(x(1−x)); the last two do not depend on the model but keep
    // the value a true negative log-likelihood.
    return logitX
      .sub(mu)
      .abs()
      .mul(lnB.neg().exp())
      .add(lnB)
      .add(Math.LN2)
      .add(x.mul(tf.scalar(1).sub(x)).log());
  });
}

/** The decoder's μ [B, H, W, 3] → reconstruction in [0, 1]: φ⁻¹(sigmoid(μ)). */
export function reconstruction(mu: tf.Tensor4D, eps: number): tf.Tensor4D {
  return tf.tidy(() => unmapPixels(mu.sigmoid(), eps) as tf.Tensor4D);
}
