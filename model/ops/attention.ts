// Masked multi-head self-attention from the fused projection: qkv [n·S, 3d] (q, k, v side by side, each
// split into H heads of dh = d/H) → softmax(q·kᵀ/√dh + mask)·v with the heads merged back, [n·S, d].
// mask [S, S] is additive (0 allowed, MASKED_SCORE not). The scale is applied to q before the product.
//
// One op for the whole core: on native TensorFlow a dozen kernels forward (one transpose splits q, k, v
// into heads; BatchMatMul, Softmax) and ~25 backward under one tape node, where the plain form costs
// ~60 tfjs ops with its gradients. The forward pass saves the attention weights and the heads for the
// backward pass (a tf.customGrad saves any tensor, a registered kernel only its inputs and outputs), so
// the backward recomputes nothing: no second transpose, q·kᵀ, mask and softmax (the softmax alone was 7 %
// of a shapes transformer step).
//   ∂s = p ⊙ (∂p − Σ_j ∂p⊙p),  ∂q = ∂s·k/√dh,  ∂k = ∂sᵀ·(q/√dh),  ∂v = pᵀ·∂y,  ∂p = ∂y·vᵀ
import * as tf from '@tensorflow/tfjs';
import { nativeOps, type NativeOps } from './native.ts';

/** [n, S, 3, H, dh] → [3, n, H, S, dh], and back. */
const TO_HEADS = [2, 0, 3, 1, 4];
const FROM_HEADS = [1, 3, 0, 2, 4];

interface Geometry {
  n: number;
  S: number;
  H: number;
  dh: number;
}

function geometryOf(qkv: tf.Tensor, S: number, H: number): Geometry {
  const [rows, width] = qkv.shape as [number, number];
  return { n: rows / S, S, H, dh: width / 3 / H };
}

interface Parts {
  /** q/√dh, k, v: [n, H, S, dh]; p: attention weights [n, H, S, S]. */
  qs: tf.Tensor;
  k: tf.Tensor;
  v: tf.Tensor;
  p: tf.Tensor;
}

function partsNative(o: NativeOps, qkv: tf.Tensor, mask: tf.Tensor, g: Geometry): Parts {
  const [q, k, v] = o.unstack(o.transpose(o.reshape(qkv, [g.n, g.S, 3, g.H, g.dh]), TO_HEADS), 3);
  const qs = o.scale(q!, 1 / Math.sqrt(g.dh));
  const p = o.softmax(o.add(o.batchMatMul(qs, k!, false, true), mask));
  return { qs, k: k!, v: v!, p };
}

function parts(qkv: tf.Tensor, mask: tf.Tensor, g: Geometry): Parts {
  const [q, k, v] = tf.unstack(qkv.reshape([g.n, g.S, 3, g.H, g.dh]).transpose(TO_HEADS), 0);
  const qs = q!.mul(1 / Math.sqrt(g.dh));
  const p = tf.softmax(tf.matMul(qs, k!, false, true).add(mask));
  return { qs, k: k!, v: v!, p };
}

/** ∂qkv from the saved parts, on native TensorFlow or with tfjs ops. */
function qkvGradient(dyIn: tf.Tensor, { qs, k, v, p }: Parts): tf.Tensor {
  const [n, H, S, dh] = qs.shape as [number, number, number, number];
  const out = [n * S, 3 * H * dh];
  const o = nativeOps();
  if (o) {
    const dy = o.transpose(o.reshape(dyIn, [n, S, H, dh]), [0, 2, 1, 3]);
    const dp = o.batchMatMul(dy, v, false, true);
    const ds = o.mul(p, o.sub(dp, o.reduce('Sum', o.mul(dp, p), [3], true)));
    const dq = o.scale(o.batchMatMul(ds, k), 1 / Math.sqrt(dh));
    const dk = o.batchMatMul(ds, qs, true, false);
    const dv = o.batchMatMul(p, dy, true, false);
    return o.reshape(o.transpose(o.stack([dq, dk, dv]), FROM_HEADS), out);
  }
  const dy = dyIn.reshape([n, S, H, dh]).transpose([0, 2, 1, 3]);
  const dp = tf.matMul(dy, v, false, true);
  const ds = p.mul(dp.sub(dp.mul(p).sum(3, true)));
  const dq = tf.matMul(ds, k).mul(1 / Math.sqrt(dh));
  const dk = tf.matMul(ds, qs, true, false);
  const dv = tf.matMul(p, dy, true, false);
  return tf.stack([dq, dk, dv]).transpose(FROM_HEADS).reshape(out);
}

/** Attention of n sequences of S positions: qkv [n·S, 3d] → [n·S, d]; mask [S, S] additive. */
export function attention(qkv: tf.Tensor2D, mask: tf.Tensor2D, seqLen: number, heads: number): tf.Tensor2D {
  const op = tf.customGrad((qkvIn, maskIn, save) => {
    const [x, m] = [qkvIn as tf.Tensor2D, maskIn as tf.Tensor2D];
    const g = geometryOf(x, seqLen, heads);
    const o = nativeOps();
    const { qs, k, v, p } = o ? partsNative(o, x, m, g) : parts(x, m, g);
    const rows = [g.n * g.S, g.H * g.dh];
    const value = o
      ? o.reshape(o.transpose(o.batchMatMul(p, v), [0, 2, 1, 3]), rows)
      : tf.matMul(p, v).transpose([0, 2, 1, 3]).reshape(rows);
    (save as (ts: tf.Tensor[]) => void)([qs, k, v, p]);
    // The mask is never trained (and may be gone by the backward pass): its gradient is zero.
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [qsS, kS, vS, pS] = saved as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
        return [tf.tidy(() => qkvGradient(dy, { qs: qsS, k: kS, v: vS, p: pS })), tf.zeros(m.shape)];
      },
    };
  });
  return op(qkv, mask) as tf.Tensor2D;
}
