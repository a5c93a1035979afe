// The demo report's reranking and guidance section: held-out accuracy of the demo's model over gRPC for
// N = 1, 4, 16 candidates per image (when the run trained a reranker) and guidance scales 1 and 3 (when it
// trained with caption dropout, the only way the model learns the unconditional logits guidance needs).
import type { RunSpec } from '../../config/index.ts';
import {
  curveSettings,
  formatCurve,
  grpcGenerator,
  heldOutCurve,
  type CurvePoint,
} from '../../eval/index.ts';

export const DEMO_CANDIDATES = [1, 4, 16];
export const DEMO_GUIDANCE_SCALES = [1, 3];

/** The curve's points, or null when the model has neither a reranker nor caption dropout (one point). */
export async function demoCurves(opts: {
  address: string;
  spec: RunSpec;
  /** Held-out prompts per setting. */
  n: number;
  log: (line: string) => void;
}): Promise<CurvePoint[] | null> {
  const candidates = opts.spec.rerank.steps > 0 ? DEMO_CANDIDATES : [1];
  const scales = opts.spec.transformer.captionDropout > 0 ? DEMO_GUIDANCE_SCALES : [1];
  const settings = curveSettings(candidates, scales);
  if (settings.length < 2) return null;
  opts.log(`held-out accuracy for ${settings.length} sampling settings (${opts.n} prompts each) over gRPC`);
  return heldOutCurve({
    generatorFor: (s) => grpcGenerator(opts.address, { concurrency: 4, ...s }),
    settings,
    resolution: opts.spec.dvae.resolution,
    n: opts.n,
    log: opts.log,
  });
}

/** The report.md section. */
export function demoCurvesSection(points: CurvePoint[] | null, spec: RunSpec): string[] {
  const why = [
    spec.rerank.steps > 0 ? '' : 'no reranker trained (rerank.steps = 0)',
    spec.transformer.captionDropout > 0 ? '' : 'no guidance curve: trained without caption dropout',
  ].filter(Boolean);
  return [
    '## Reranking and guidance (held-out compositions)',
    '',
    ...(points
      ? [
          'Each image is the best of N candidates by the run’s reranker; guidance samples from u + s·(c − u). Same prompts and seeds for every row; time per image returned. “Any candidate right”: the share of prompts for which one of the N candidates was right on all four, the most a reranker can reach (the rest is the transformer’s).',
          '',
          '```',
          formatCurve(points),
          '```',
        ]
      : []),
    ...(why.length ? ['', `${why.join('; ')}.`] : []),
    '',
  ];
}
