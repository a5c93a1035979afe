// How well a shapes model's reranker recognises each attribute, on real images: every image is classified
// among the captions of all compositions (6 colours × 3 shapes × 2 sizes × 9 positions = 324), one caption
// template at a time, and the best-scoring caption's attributes are compared with the image's. Reranking can
// pick the right candidate only as reliably as this: it is the ceiling of `candidates` N on held-out
// prompts (generated images aside).
import {
  ALL_COMPOSITIONS,
  CAPTION_TEMPLATES,
  HELD_OUT_COMPOSITIONS,
  renderShape,
  TRAIN_COMPOSITIONS,
  type ShapeComposition,
} from '../data/shapes.ts';
import type { EvalReranker } from './caption-scores.ts';
import { ATTRIBUTES, evalCaption, type Attribute } from './shapes-eval.ts';

/** Share of images whose best caption names the image's attribute, and all four at once. */
export type AttributeAccuracy = Record<Attribute | 'all', number> & { images: number };

export interface RerankerAttributeReport {
  /** Real images of the held-out colour–shape pairs (never in training). */
  heldOut: AttributeAccuracy;
  /** Real images of every fourth seen composition. */
  seen: AttributeAccuracy;
  /** Captions each image is classified among (per template). */
  captions: number;
  templates: number;
}

/** Three centre offsets per composition: the corners of the jitter square and its centre. */
const JITTERS = [
  { dx: -1, dy: 1 },
  { dx: 1, dy: -1 },
  { dx: 0, dy: 0 },
];

function classify(reranker: EvalReranker, comps: readonly ShapeComposition[]): AttributeAccuracy {
  const R = reranker.resolution;
  const px = R * R * 3;
  const n = comps.length * JITTERS.length;
  const images = new Uint8Array(n * px);
  comps.forEach((c, k) =>
    JITTERS.forEach((j, q) => images.set(renderShape({ ...c, jitter: j }, R), (k * JITTERS.length + q) * px)),
  );
  const m = ALL_COMPOSITIONS.length;
  const hits = { color: 0, shape: 0, size: 0, position: 0, all: 0 };
  for (let t = 0; t < CAPTION_TEMPLATES.length; t++) {
    const sim = reranker.similarities(
      ALL_COMPOSITIONS.map((c) => evalCaption(c, t)),
      images,
      n,
    );
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < m; j++) if (sim[i * m + j]! > sim[i * m + best]!) best = j;
      const truth = comps[Math.floor(i / JITTERS.length)]!;
      const picked = ALL_COMPOSITIONS[best]!;
      for (const a of ATTRIBUTES) if (picked[a] === truth[a]) hits[a]++;
      if (ATTRIBUTES.every((a) => picked[a] === truth[a])) hits.all++;
    }
  }
  const total = n * CAPTION_TEMPLATES.length;
  return {
    images: total,
    color: hits.color / total,
    shape: hits.shape / total,
    size: hits.size / total,
    position: hits.position / total,
    all: hits.all / total,
  };
}

/** Zero-shot attribute accuracy of a shapes reranker on real held-out and seen images. */
export function rerankerAttributes(reranker: EvalReranker): RerankerAttributeReport {
  return {
    heldOut: classify(reranker, HELD_OUT_COMPOSITIONS),
    seen: classify(
      reranker,
      TRAIN_COMPOSITIONS.filter((_, i) => i % 4 === 0),
    ),
    captions: ALL_COMPOSITIONS.length,
    templates: CAPTION_TEMPLATES.length,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

/** A markdown table of the report. */
export function formatRerankerAttributes(r: RerankerAttributeReport): string {
  const row = (label: string, a: AttributeAccuracy) =>
    `| ${label} | ${a.images} | ${ATTRIBUTES.map((k) => pct(a[k])).join(' | ')} | ${pct(a.all)} |`;
  return [
    `reranker on real images, each classified among the ${r.captions} compositions' captions (${r.templates} templates):`,
    '',
    '| real images | n | color | shape | size | position | all four |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    row('held-out compositions', r.heldOut),
    row('seen compositions', r.seen),
    `| chance | – | 16.7% | 33.3% | 50.0% | 11.1% | 0.3% |`,
  ].join('\n');
}
