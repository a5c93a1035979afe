// Attribute accuracy of plain samples (temperature 1, no filtering) for shapes captions: n seen and n
// held-out compositions, one image each, drawn in one KV-cache session and judged by the pixel analyzer.
// The cheap, in-process version of `dalle eval` that training runs at every checkpoint.
import { HELD_OUT_COMPOSITIONS, TRAIN_COMPOSITIONS, type ShapeComposition } from '../data/shapes.ts';
import type { Tokenizer } from '../data/index.ts';
import { createSampler, type Transformer } from '../model/index.ts';
import { evalCaption, pickCompositions } from './shapes-eval.ts';
import type { AttributeAccuracy } from '../contract/index.ts';
import { judgeShapes } from './dvae-quality.ts';

export interface SampleAccuracy {
  /** Prompts per group. */
  n: number;
  seen: AttributeAccuracy;
  heldOut: AttributeAccuracy;
  /** Wall time of sampling, decoding and judging. */
  seconds: number;
}

/** Image tokens [rows, g²] for caption ids `texts` (each [textLen]), row r with seed `seed + r`. */
export function sampleTokens(model: Transformer, texts: Int32Array[], seed: number): Int32Array {
  const session = createSampler(model).start(
    texts.map((text, r) => ({ text, seed: (seed + r) % 2 ** 32, temperature: 1 })),
  );
  try {
    while (!session.done) session.step();
    const N = model.dims.imageLen;
    const out = new Int32Array(texts.length * N);
    texts.forEach((_, r) => out.set(session.tokens(r), r * N));
    return out;
  } finally {
    session.dispose();
  }
}

export interface SampleAccuracyOptions {
  model: Transformer;
  tokenizer: Tokenizer;
  /** Tokens [n, g²] → RGB [n, R, R, 3] (the dVAE decoder). */
  decode: (tokens: Int32Array) => Uint8Array;
  canvas: number;
  /** Prompts per group (default 24). */
  n?: number;
  seed?: number;
}

export function sampleAccuracy(o: SampleAccuracyOptions): SampleAccuracy {
  const t0 = performance.now();
  const n = o.n ?? 24;
  const seed = o.seed ?? 0;
  const groups: [string, ShapeComposition[]][] = [
    ['seen', pickCompositions(TRAIN_COMPOSITIONS, n, seed, 'seen')],
    ['heldout', pickCompositions(HELD_OUT_COMPOSITIONS, n, seed, 'heldout')],
  ];
  const all = groups.flatMap(([, comps]) => comps);
  const texts = all.map((c, k) => o.tokenizer.encode(evalCaption(c, k % n), o.model.dims.textLen).ids);
  const rgb = o.decode(sampleTokens(o.model, texts, seed));
  const per = o.canvas * o.canvas * 3;
  const seen = judgeShapes(rgb.subarray(0, n * per), groups[0]![1], o.canvas).accuracy;
  const heldOut = judgeShapes(rgb.subarray(n * per), groups[1]![1], o.canvas).accuracy;
  return { n, seen, heldOut, seconds: (performance.now() - t0) / 1000 };
}
