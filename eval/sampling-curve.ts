// Held-out accuracy of a shapes model against how it is sampled: candidates N per image (the reranker keeps
// the best) and the classifier-free guidance scale. Every setting draws the same held-out prompts with the
// same seeds as `evaluateShapes` (so N = 1 at scale 1 is its held-out row exactly) and is judged from the
// pixels alone; the cost is the wall time per image returned, all candidates and guidance rows included,
// after one untimed warm-up request per setting. With N > 1 the candidates are also drawn plainly and judged
// one by one (untimed): whether any was right separates what the reranker missed from what the transformer
// never drew.
import { HELD_OUT_COMPOSITIONS, type ShapeComposition } from '../data/shapes.ts';
import type { SamplingChoice } from './generators.ts';
import {
  ATTRIBUTES,
  evalCaption,
  EvalOptionError,
  generateAndJudge,
  judge,
  pickCompositions,
  type GenerateFn,
  type GroupScore,
} from './shapes-eval.ts';

/** One sampling setting of a curve. */
export type CurveSetting = Required<Pick<SamplingChoice, 'candidates' | 'guidanceScale'>>;

export interface CurvePoint extends CurveSetting {
  heldOut: GroupScore;
  /** Wall milliseconds per image returned. */
  msPerImage: number;
  /** With N > 1 candidates: the share of prompts for which any of the N candidates is right on all four
   *  attributes, i.e. what a reranker that always found the right one would reach. The candidates are drawn
   *  again without reranking, with the same seeds. */
  anyCandidateRight?: number;
}

/** Every combination of the candidate counts and guidance scales, in the order given. */
export function curveSettings(candidates: number[], guidanceScales: number[]): CurveSetting[] {
  return candidates.flatMap((c) => guidanceScales.map((g) => ({ candidates: c, guidanceScale: g })));
}

/** Makes the model's generator for one sampling setting. */
type GeneratorFor = (s: CurveSetting) => Promise<{ generate: GenerateFn; close?: () => void }>;

/** Held-out accuracy for each setting; `generatorFor` makes the model's generator for one setting. */
export async function heldOutCurve(opts: {
  generatorFor: GeneratorFor;
  settings: CurveSetting[];
  /** The model's image side. */
  resolution: number;
  /** Held-out prompts per setting (default 108: every held-out composition once). */
  n?: number;
  seed?: number;
  log?: (line: string) => void;
}): Promise<CurvePoint[]> {
  const n = opts.n ?? HELD_OUT_COMPOSITIONS.length;
  const seed = opts.seed ?? 0;
  if (!(Number.isInteger(n) && n >= 1)) throw new EvalOptionError('n', n, 'must be a positive integer');
  if (!opts.settings.length) throw new EvalOptionError('settings', 0, 'the curve needs ≥ 1 setting');
  // The held-out prompts and seeds of evaluateShapes (its held-out group follows n seen prompts).
  const comps = pickCompositions(HELD_OUT_COMPOSITIONS, n, seed, 'heldout');
  const sampleSeed = (seed + n) % 2 ** 32;
  const points: CurvePoint[] = [];
  for (const setting of opts.settings) {
    const g = await opts.generatorFor(setting);
    try {
      // Untimed: the first session of a setting pays for allocation and kernel warm-up, not sampling.
      await g.generate([evalCaption(comps[0]!, 0)], 1, seed);
      const { score } = await generateAndJudge(g.generate, 'heldOut', comps, sampleSeed, opts.resolution);
      const point: CurvePoint = { ...setting, heldOut: score, msPerImage: (1000 * score.seconds) / n };
      opts.log?.(
        `N ${setting.candidates}, guidance ${setting.guidanceScale}: held-out all four ${(100 * score.accuracy.all).toFixed(1)}%, ${point.msPerImage.toFixed(0)} ms/image`,
      );
      if (setting.candidates > 1) {
        point.anyCandidateRight = await anyCandidateRight(opts, setting, comps, sampleSeed);
        opts.log?.(
          `  any of the ${setting.candidates} right: ${(100 * point.anyCandidateRight).toFixed(1)}%`,
        );
      }
      points.push(point);
    } finally {
      g.close?.();
    }
  }
  return points;
}

/** The N candidates of each prompt drawn as N plain images of one request (the reranked request's samples:
 *  sample c of prompt k has the seed of candidate c), judged one by one: the share of prompts with one right. */
async function anyCandidateRight(
  opts: { generatorFor: GeneratorFor; resolution: number },
  setting: CurveSetting,
  comps: ShapeComposition[],
  seed: number,
): Promise<number> {
  const N = setting.candidates;
  const R = opts.resolution;
  const px = R * R * 3;
  const g = await opts.generatorFor({ candidates: 1, guidanceScale: setting.guidanceScale });
  try {
    const prompts = comps.map(evalCaption);
    const images = await g.generate(prompts, N, seed);
    const hits = comps.filter((c, k) =>
      Array.from(
        { length: N },
        (_, i) => judge('heldOut', prompts[k]!, c, images[k]!.subarray(i * px, (i + 1) * px), R).correct.all,
      ).some(Boolean),
    );
    return hits.length / comps.length;
  } finally {
    g.close?.();
  }
}

/** The curve as a Markdown table. */
export function formatCurve(points: CurvePoint[]): string {
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  return [
    '| candidates N | guidance scale | n | color | shape | size | position | all four | any candidate right | ms per image |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...points.map(
      (p) =>
        `| ${p.candidates} | ${p.guidanceScale} | ${p.heldOut.images} | ${[...ATTRIBUTES, 'all' as const].map((k) => pct(p.heldOut.accuracy[k])).join(' | ')} | ${p.anyCandidateRight === undefined ? '–' : pct(p.anyCandidateRight)} | ${p.msPerImage.toFixed(0)} |`,
    ),
  ].join('\n');
}
