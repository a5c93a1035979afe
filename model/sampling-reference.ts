// The cache-free sampler: recomputes the whole prefix for every token. It exists only as the reference
// the KV-cache sampler (./sampling.ts) is tested against and as the "without cache" side of
// `dalle bench transformer`; serving code must not use it (it costs O(N) forwards of growing length).
import * as tf from '@tensorflow/tfjs';
import { pickToken, resolveRow, rowUniform, type SampleRow } from './sampling.ts';
import type { Transformer } from './transformer.ts';

/** Tokens of each row, [grid²] each, drawn with exactly the rules and random numbers of `sampling.ts`. */
export function sampleWithoutCache(model: Transformer, rows: SampleRow[]): Int32Array[] {
  const opts = rows.map((r, i) => resolveRow(model, r, i));
  const { textLen: L, imageLen: N, imageVocab: K } = model.dims;
  const R = rows.length;
  const out = rows.map(() => new Int32Array(N));
  const text = tf.tensor2d(Int32Array.from(rows.flatMap((r) => [...r.text])), [R, L], 'int32');
  try {
    for (let j = 0; j < N; j++) {
      const values = tf.tidy(() => {
        const prefix =
          j === 0
            ? null
            : tf.tensor2d(Int32Array.from(out.flatMap((t) => [...t.subarray(0, j)])), [R, j], 'int32');
        const lg = model.logits(text, prefix).image; // [R, j+1, K]
        return lg.slice([0, j, 0], [R, 1, K]).reshape([R, K]);
      });
      const v = values.dataSync() as Float32Array;
      values.dispose();
      opts.forEach((o, r) => {
        out[r]![j] = pickToken(v.subarray(r * K, (r + 1) * K), o, rowUniform(o.seed, o.index, j));
      });
    }
  } finally {
    text.dispose();
  }
  return out;
}
