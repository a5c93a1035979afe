// Masked multi-head self-attention from the fused projection: qkv [n·S, 3d] (q, k, v side by side, each
// split into H heads of dh = d/H) → softmax(q·kᵀ/√dh + mask)·v with the heads merged back, [n·S, d].
// mask [S, S] is additive (0 allowed, MASKED_SCORE not). The scale is applied to q before the product.
//
// One op for the whole core: on native TensorFlow a dozen kernels forward (one transpose splits q, k, v
// into heads; BatchMatMul, Softmax) and ~25 backward under one tape node, where the plain form costs
// ~60 tfjs ops with its gradients. The backward pass recomputes the attention weights from the saved
// qkv (an op saves only its inputs and outputs): one more q·kᵀ, a few % of a layer's work.
//   ∂s = p ⊙ (∂p − Σ_j ∂p⊙p),  ∂q = ∂s·k/√dh,  ∂k = ∂sᵀ·(q/√dh),  ∂v = pᵀ·∂y,  ∂p = ∂y·vᵀ
import * as tf from '@tensorflow/tfjs';
import { nativeOps, type NativeOps } from './native.ts';
import { registerOp } from './register.ts';

const KERNEL = 'DalleAttention';
/** [n, S, 3, H, dh] → [3, n, H, S, dh], and back. */
const TO_HEADS = [2, 0, 3, 1, 4];
const FROM_HEADS = [1, 3, 0, 2, 4];

interface Geometry {
  n: number;
  S: number;
  H: number;
  dh: number;
}

function geometryOf(qkv: tf.Tensor, attrs: tf.NamedAttrMap): Geometry {
  const [rows, width] = qkv.shape as [number, number];
  const S = attrs.seqLen as number;
  const H = attrs.heads as number;
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

registerOp({
  kernelName: KERNEL,
  forward: ({ qkv, mask }, attrs) => {
    const g = geometryOf(qkv, attrs);
    const d = g.H * g.dh;
    const o = nativeOps();
    if (o) {
      const { p, v } = partsNative(o, qkv, mask, g);
      return o.reshape(o.transpose(o.batchMatMul(p, v), [0, 2, 1, 3]), [g.n * g.S, d]);
    }
    const { p, v } = parts(qkv, mask, g);
    return tf
      .matMul(p, v)
      .transpose([0, 2, 1, 3])
      .reshape([g.n * g.S, d]);
  },
  inputsToSave: ['qkv', 'mask'],
  gradient: (dyIn, [qkv, mask], attrs) => ({
    qkv: () => {
      const g = geometryOf(qkv!, attrs);
      const out = [g.n * g.S, 3 * g.H * g.dh];
      const o = nativeOps();
      if (o) {
        const { qs, k, v, p } = partsNative(o, qkv!, mask!, g);
        const dy = o.transpose(o.reshape(dyIn as tf.Tensor, [g.n, g.S, g.H, g.dh]), [0, 2, 1, 3]);
        const dp = o.batchMatMul(dy, v, false, true);
        const ds = o.mul(p, o.sub(dp, o.reduce('Sum', o.mul(dp, p), [3], true)));
        const dq = o.scale(o.batchMatMul(ds, k), 1 / Math.sqrt(g.dh));
        const dk = o.batchMatMul(ds, qs, true, false);
        const dv = o.batchMatMul(p, dy, true, false);
        return o.reshape(o.transpose(o.stack([dq, dk, dv]), FROM_HEADS), out);
      }
      const { qs, k, v, p } = parts(qkv!, mask!, g);
      const dy = (dyIn as tf.Tensor).reshape([g.n, g.S, g.H, g.dh]).transpose([0, 2, 1, 3]);
      const dp = tf.matMul(dy, v, false, true);
      const ds = p.mul(dp.sub(dp.mul(p).sum(3, true)));
      const dq = tf.matMul(ds, k).mul(1 / Math.sqrt(g.dh));
      const dk = tf.matMul(ds, qs, true, false);
      const dv = tf.matMul(p, dy, true, false);
      return tf.stack([dq, dk, dv]).transpose(FROM_HEADS).reshape(out);
    },
    mask: () => tf.zerosLike(mask!),
  }),
});

/** Attention of n sequences of S positions: qkv [n·S, 3d] → [n·S, d]; mask [S, S] additive. */
export function attention(qkv: tf.Tensor2D, mask: tf.Tensor2D, seqLen: number, heads: number): tf.Tensor2D {
  return tf.engine().runKernel(KERNEL, { qkv, mask }, { seqLen, heads }) as tf.Tensor2D;
}
