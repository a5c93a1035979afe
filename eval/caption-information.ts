// Caption information: how much the text tells the transformer about the image, in nats per image token.
//
//   information = CE_image(tokens | another example's caption) − CE_image(tokens | its own caption)
//
// over a validation set. 0 means the model ignores the text; it grows as the image predictions come to
// depend on the caption. The "other" caption of example i is that of example π(i) for a fixed
// derangement π that never pairs two examples with the same caption text, so a repeated caption cannot
// pass for information.
import * as tf from '@tensorflow/tfjs';
import type { Transformer } from '../model/index.ts';

export interface CaptionInformation {
  /** Validation examples. */
  examples: number;
  /** Mean image-token cross-entropy with the true captions, nats/token. */
  lossTrue: number;
  /** … with another example's caption. */
  lossOther: number;
  /** lossOther − lossTrue. */
  information: number;
}

/** A validation set the measurement cannot use. */
export class CaptionInformationError extends Error {
  override name = 'CaptionInformationError';
  constructor(readonly problem: string) {
    super(`caption information: ${problem}`);
  }
}

/** Mean image-token cross-entropy of each of n sequences, [n]. */
function imageLossPerExample(
  model: Transformer,
  text: Int32Array,
  image: Int32Array,
  n: number,
): Float32Array {
  const { textLen: L, imageLen: N, imageVocab: K } = model.dims;
  const t = tf.tidy(() => {
    const tt = tf.tensor2d(text, [n, L], 'int32');
    const it = tf.tensor2d(image, [n, N], 'int32');
    const prefix = N > 1 ? it.slice([0, 0], [n, N - 1]) : null;
    const logp = tf.logSoftmax(model.logits(tt, prefix).image); // [n, N, K]
    return logp
      .mul(tf.oneHot(it, K, 1, 0, 'int32').cast('float32'))
      .sum(-1)
      .mean(-1)
      .neg(); // [n]
  });
  const v = t.dataSync() as Float32Array;
  t.dispose();
  return v;
}

/** A permutation with π(i) ≠ i and text(π(i)) ≠ text(i) wherever possible: a rotation of the examples
 *  sorted by caption text, by the size of the largest run of equal captions. */
export function captionDerangement(text: Int32Array, n: number, textLen: number): Int32Array {
  const keys = Array.from({ length: n }, (_, i) => text.subarray(i * textLen, (i + 1) * textLen).join(','));
  const order = keys
    .map((_, i) => i)
    .sort((a, b) => (keys[a]! < keys[b]! ? -1 : keys[a]! > keys[b]! ? 1 : a - b));
  let run = 1;
  let longest = 1;
  for (let i = 1; i < n; i++) {
    run = keys[order[i]!] === keys[order[i - 1]!] ? run + 1 : 1;
    longest = Math.max(longest, run);
  }
  const shift = Math.min(longest, n - 1);
  const pi = new Int32Array(n);
  for (let k = 0; k < n; k++) pi[order[k]!] = order[(k + shift) % n]!;
  return pi;
}

/** The measurement over n validation examples (text [n, L] without BPE dropout, image [n, g²]), in
 *  chunks of `chunk` sequences. */
export function captionInformation(
  model: Transformer,
  text: Int32Array,
  image: Int32Array,
  n: number,
  chunk = 64,
): CaptionInformation {
  const { textLen: L, imageLen: N } = model.dims;
  if (!(Number.isInteger(n) && n >= 2)) throw new CaptionInformationError(`needs ≥ 2 examples, got ${n}`);
  model.checkTokens(text, n, image);
  const pi = captionDerangement(text, n, L);
  const other = new Int32Array(n * L);
  for (let i = 0; i < n; i++) other.set(text.subarray(pi[i]! * L, (pi[i]! + 1) * L), i * L);
  let sumTrue = 0;
  let sumOther = 0;
  for (let i0 = 0; i0 < n; i0 += chunk) {
    const m = Math.min(chunk, n - i0);
    const img = image.subarray(i0 * N, (i0 + m) * N);
    for (const v of imageLossPerExample(model, text.subarray(i0 * L, (i0 + m) * L), img, m)) sumTrue += v;
    for (const v of imageLossPerExample(model, other.subarray(i0 * L, (i0 + m) * L), img, m)) sumOther += v;
  }
  const lossTrue = sumTrue / n;
  const lossOther = sumOther / n;
  return { examples: n, lossTrue, lossOther, information: lossOther - lossTrue };
}
