// The caption–image score of a model on any dataset, judged by the model's own reranker (a contrastive
// text–image model that reads pixels, model/reranker.ts): where no pixel analyzer exists (users' photos),
// this is the number that says whether generated images follow their captions.
//
// For n held-out pairs (caption, real image) it generates one image per caption and reports, for the
// generated images and for the real ones:
//   - the mean cosine of each image with its own caption (higher: a closer match);
//   - R-precision: the share of images whose own caption scores above every one of up to 31 other captions
//     of the set (the standard text-to-image retrieval check; chance is 1 / (others + 1)).
// Real images with another pair's caption give the floor of the mean. The real images' figures are the
// ceiling the reranker itself allows: generated images near them follow their captions as well as the data.
import type { GenerateFn } from './shapes-eval.ts';
import { EvalImageError, EvalOptionError } from './shapes-eval.ts';

/** The reranker as the evaluation needs it. */
export interface EvalReranker {
  /** Image side R the reranker reads (= the model's images). */
  resolution: number;
  /** Cosines of n images [n, R, R, 3] against m captions: [n, m] row-major. */
  similarities(captions: string[], rgb: Uint8Array, n: number): Float32Array;
}

/** One held-out pair: its caption and its real image, preprocessed to R×R. */
export interface CaptionedImage {
  caption: string;
  rgb: Uint8Array;
}

export interface ScoreRow {
  images: number;
  /** Mean cosine with the image's own caption. */
  mean: number;
  /** Share of images whose own caption beats every distractor caption. */
  rPrecision: number;
}

export interface CaptionScoreReport {
  pairs: number;
  /** Other captions each image's own caption is ranked against (R-precision chance = 1 / (this + 1)). */
  distractors: number;
  generated: ScoreRow;
  real: ScoreRow;
  /** Real images against another pair's caption: the mean's floor. */
  mismatchedMean: number;
  seconds: number;
}

/** Up to 31 distractors per image: captions i+1, i+2, … of the set (cyclic), a fixed and fair choice. */
const MAX_DISTRACTORS = 31;

function rows(sim: Float32Array, n: number, distractors: number): ScoreRow {
  let sum = 0;
  let hits = 0;
  for (let i = 0; i < n; i++) {
    const own = sim[i * n + i]!;
    sum += own;
    let beaten = true;
    for (let d = 1; d <= distractors; d++) if (sim[i * n + ((i + d) % n)]! >= own) beaten = false;
    if (beaten) hits++;
  }
  return { images: n, mean: sum / n, rPrecision: hits / n };
}

/** Generates one image per pair's caption (seed as GenerateFn says) and scores generated and real images. */
export async function captionScores(opts: {
  generate: GenerateFn;
  reranker: EvalReranker;
  pairs: CaptionedImage[];
  seed?: number;
  log?: (line: string) => void;
}): Promise<CaptionScoreReport> {
  const { pairs, reranker } = opts;
  const n = pairs.length;
  if (n < 2) throw new EvalOptionError('pairs', n, 'needs ≥ 2 captioned images (R-precision ranks captions)');
  const R = reranker.resolution;
  const per = R * R * 3;
  const captions = pairs.map((p) => p.caption);
  const real = new Uint8Array(n * per);
  pairs.forEach((p, i) => {
    if (p.rgb.length !== per) throw new EvalImageError(`real image ${i}`, p.rgb.length, per);
    real.set(p.rgb, i * per);
  });
  const t0 = performance.now();
  const images = await opts.generate(captions, 1, opts.seed ?? 0);
  const seconds = (performance.now() - t0) / 1000;
  const generated = new Uint8Array(n * per);
  images.forEach((img, i) => {
    if (img.length !== per) throw new EvalImageError(`generated image ${i}`, img.length, per);
    generated.set(img, i * per);
  });
  const distractors = Math.min(MAX_DISTRACTORS, n - 1);
  const simReal = reranker.similarities(captions, real, n);
  const simGen = reranker.similarities(captions, generated, n);
  let mismatched = 0;
  for (let i = 0; i < n; i++) mismatched += simReal[i * n + ((i + 1) % n)]!;
  const report = {
    pairs: n,
    distractors,
    generated: rows(simGen, n, distractors),
    real: rows(simReal, n, distractors),
    mismatchedMean: mismatched / n,
    seconds,
  };
  opts.log?.(
    `caption–image score: generated ${report.generated.mean.toFixed(3)} vs real ${report.real.mean.toFixed(3)} (${n} pairs, ${seconds.toFixed(1)} s)`,
  );
  return report;
}

/** The report as a Markdown table (what `dalle eval` prints). */
export function formatCaptionScores(r: CaptionScoreReport): string {
  const pct = (v: number) => `${(100 * v).toFixed(1)}%`;
  return [
    `| images (${r.pairs} held-out captions) | mean score with own caption | R-precision (1 of ${r.distractors + 1}) |`,
    '| --- | ---: | ---: |',
    `| generated | ${r.generated.mean.toFixed(3)} | ${pct(r.generated.rPrecision)} |`,
    `| real | ${r.real.mean.toFixed(3)} | ${pct(r.real.rPrecision)} |`,
    `| real, another pair's caption (floor) | ${r.mismatchedMean.toFixed(3)} | – |`,
    `| chance | – | ${pct(1 / (r.distractors + 1))} |`,
  ].join('\n');
}
