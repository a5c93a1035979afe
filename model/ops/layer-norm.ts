// Layer normalization over the last axis, y = (x − μ)·rsqrt(σ² + ε)·g + b, as one op.
//
// Backward, per row with x̂ = (x − μ)·r, r = rsqrt(σ² + ε) and the row width d:
//   ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),  ĝ = ∂y·g;   ∂g = Σ_rows ∂y·x̂;   ∂b = Σ_rows ∂y
// x̂ and r are saved by the forward pass. On native TensorFlow that is about 13 kernels under one tape
// node, against ~40 tfjs ops (moments, their gradients, broadcasts) for the plain formula; a pass that
// records no gradient runs oneDNN's fused layer norm instead (one kernel).
import * as tf from '@tensorflow/tfjs';
import { nativeOps, type NativeOps } from './native.ts';

/** x̂ and r of the rows of x (native). */
function normalizeNative(n: NativeOps, x: tf.Tensor, eps: number): { xhat: tf.Tensor; r: tf.Tensor } {
  const last = x.rank - 1;
  const xc = n.sub(x, n.reduce('Mean', x, [last], true));
  const r = n.rsqrt(n.shift(n.reduce('Mean', n.square(xc), [last], true), eps));
  return { xhat: n.mul(xc, r), r };
}

/** The same with tfjs ops. */
function normalize(x: tf.Tensor, eps: number): { xhat: tf.Tensor; r: tf.Tensor } {
  const xc = x.sub(x.mean(-1, true));
  const r = tf.rsqrt(xc.square().mean(-1, true).add(eps));
  return { xhat: xc.mul(r), r };
}

/** ∂x, ∂g, ∂b from dy, g and the forward's x̂ and r. */
function gradients(dy: tf.Tensor, g: tf.Tensor, xhat: tf.Tensor, r: tf.Tensor): tf.Tensor[] {
  const n = nativeOps();
  const last = xhat.rank - 1;
  const rows = Array.from({ length: last }, (_, i) => i);
  if (n) {
    const gh = n.mul(dy, g);
    const centred = n.sub(gh, n.reduce('Mean', gh, [last], true));
    const proj = n.mul(xhat, n.reduce('Mean', n.mul(gh, xhat), [last], true));
    return [n.mul(n.sub(centred, proj), r), n.reduce('Sum', n.mul(dy, xhat), rows, false), n.biasAddGrad(dy)];
  }
  const gh = dy.mul(g);
  const dx = gh
    .sub(gh.mean(-1, true))
    .sub(xhat.mul(gh.mul(xhat).mean(-1, true)))
    .mul(r);
  return [dx, dy.mul(xhat).sum(rows), dy.sum(rows)];
}

/** LayerNorm over the last axis with gain g and bias b (each [d]); ε 1e-5 by default, the models' own. */
export function layerNorm<T extends tf.Tensor>(x: T, g: tf.Tensor, b: tf.Tensor, eps = 1e-5): T {
  // Where no gradient is recorded (sampling, evaluation), oneDNN's layer norm is one kernel for nine.
  if (!tf.engine().isTapeOn()) {
    const y = nativeOps()?.layerNormRows(x, g, b, eps);
    if (y) return y as T;
  }
  // One tape node (tf.customGrad) that saves g, x̂ and r: the backward pass does not recompute the row
  // statistics (seven kernels per call on native).
  const op = tf.customGrad((xIn, gIn, bIn, save) => {
    const [xT, gT, bT] = [xIn, gIn, bIn] as tf.Tensor[];
    const n = nativeOps();
    const { xhat, r } = n ? normalizeNative(n, xT!, eps) : normalize(xT!, eps);
    const value = n ? n.biasAdd(n.mul(xhat, gT!), bT!) : xhat.mul(gT!).add(bT!);
    (save as (ts: tf.Tensor[]) => void)([gT!, xhat, r]);
    return {
      value,
      gradFunc: (dy: tf.Tensor, [gS, xhatS, rS]: tf.Tensor[]) =>
        tf.tidy(() => gradients(dy, gS!, xhatS!, rS!)),
    };
  });
  return op(x, g, b) as T;
}
