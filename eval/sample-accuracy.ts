// Attribute accuracy of plain samples (temperature 1, no filtering) for shapes captions: n seen and n
// held-out compositions, one image each, drawn in one KV-cache session and judged by the pixel analyzer.
// The cheap, in-process version of `dalle eval` that training runs at every checkpoint.
import { HELD_OUT_COMPOSITIONS, TRAIN_COMPOSITIONS, type ShapeComposition } from '../data/shapes.ts';
import type { Tokenizer } from '../data/index.ts';
import { createSampler, type Transformer } from '../model/index.ts';
import { ATTRIBUTES, evalCaption, pickCompositions } from './shapes-eval.ts';
import type { AttributeAccuracy } from '../contract/index.ts';
import { judgeShapes } from './dvae-quality.ts';

export interface SampleAccuracy {
  /** Prompts per group. */
  n: number;
  seen: AttributeAccuracy;
  heldOut: AttributeAccuracy;
  /** Every sample not right on all four attributes: what was asked and what the analyzer read (null: no
   *  figure found). */
  misses: { seen: SampleMiss[]; heldOut: SampleMiss[] };
  /** Wall time of sampling, decoding and judging. */
  seconds: number;
}

export interface SampleMiss {
  asked: ShapeComposition;
  drawn: ShapeComposition | null;
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
  const judged = groups.map(([, comps], g) => {
    const j = judgeShapes(rgb.subarray(g * n * per, (g + 1) * n * per), comps, o.canvas);
    const misses = comps.flatMap((asked, i): SampleMiss[] => {
      const drawn = j.perImage[i] ?? null;
      const right = drawn && ATTRIBUTES.every((k) => drawn[k] === asked[k]);
      return right ? [] : [{ asked, drawn }];
    });
    return { accuracy: j.accuracy, misses };
  });
  return {
    n,
    seen: judged[0]!.accuracy,
    heldOut: judged[1]!.accuracy,
    misses: { seen: judged[0]!.misses, heldOut: judged[1]!.misses },
    seconds: (performance.now() - t0) / 1000,
  };
}
