// The cache-free sampler: recomputes the whole prefix for every token. It exists only as the reference
// the KV-cache sampler (./sampling.ts) is tested against and as the "without cache" side of
// `dalle bench transformer`; serving code must not use it (it costs O(N) forwards of growing length).
import * as tf from '@tensorflow/tfjs';
import { guidedLogits, pickToken, resolveRow, rowUniform, type SampleRow } from './sampling.ts';
import type { Transformer } from './transformer.ts';

/** Tokens of each row, [grid²] each, drawn with exactly the rules and random numbers of `sampling.ts`. */
export function sampleWithoutCache(model: Transformer, rows: SampleRow[]): Int32Array[] {
  const opts = rows.map((r, i) => resolveRow(model, r, i));
  const { textLen: L, imageLen: N, imageVocab: K } = model.dims;
  const R = rows.length;
  const out = rows.map(() => new Int32Array(N));
  const text = tf.tensor2d(Int32Array.from(rows.flatMap((r) => [...r.text])), [R, L], 'int32');
  const empty = tf.zeros([R, L], 'int32') as tf.Tensor2D; // guidance's unconditional caption
  const guided = opts.some((o) => o.guidanceScale !== 1);
  try {
    for (let j = 0; j < N; j++) {
      const next = (caption: tf.Tensor2D) => {
        const values = tf.tidy(() => {
          const prefix =
            j === 0
              ? null
              : tf.tensor2d(Int32Array.from(out.flatMap((t) => [...t.subarray(0, j)])), [R, j], 'int32');
          const lg = model.logits(caption, prefix).image; // [R, j+1, K]
          return lg.slice([0, j, 0], [R, 1, K]).reshape([R, K]);
        });
        const v = values.dataSync() as Float32Array;
        values.dispose();
        return v;
      };
      const v = next(text);
      const u = guided ? next(empty) : v;
      opts.forEach((o, r) => {
        const c = v.subarray(r * K, (r + 1) * K);
        const lg =
          o.guidanceScale === 1 ? c : guidedLogits(c, u.subarray(r * K, (r + 1) * K), o.guidanceScale);
        out[r]![j] = pickToken(lg, o, rowUniform(o.seed, o.index, j));
      });
    }
  } finally {
    tf.dispose([text, empty]);
  }
  return out;
}
