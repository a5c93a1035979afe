// What a training run measures at each checkpoint, as plain JSON types (they travel in progress signals,
// workflow state and `dalle status --json`, so this file imports nothing), and its one-line summary.

/** Share of images judged right per attribute, and on all four at once. */
export interface AttributeAccuracy {
  color: number;
  shape: number;
  size: number;
  position: number;
  all: number;
}

/** Which validation images a number was measured on (quality/validation.ts). */
export type ValidationName = 'seen' | 'heldOut' | 'train';

/** One checkpoint's measurements (plain JSON: it travels in progress signals and status output). */
export interface QualityPoint {
  stage: 'dvae' | 'transformer';
  step: number;
  /** Wall clock when measured, ms since the epoch (the demo plots against training time). */
  at: number;
  /** Cost of the measurement, s. */
  seconds: number;
  dvae?: {
    /** Which validation images were reconstructed. */
    split: ValidationName;
    images: number;
    codesUsed: number;
    perplexity: number;
    mse: number;
    /** Shapes set: reconstructions judged right, per attribute and all four. */
    accuracy?: AttributeAccuracy;
    /** Shapes set: colours whose reconstructions are mostly judged right (of 6). */
    colorsDistinct?: number;
  };
  transformer?: {
    /** nats per image token, per validation set (see caption-information.ts). */
    captionInformation: Partial<Record<ValidationName, number>>;
    /** Shapes set: plain samples judged right, n prompts per group. */
    samples?: { n: number; seen: AttributeAccuracy; heldOut: AttributeAccuracy };
  };
}

/** One line a human reads in the worker log and `dalle train`'s output. */
export function qualityLine(q: QualityPoint): string {
  const pct = (v: number | undefined) => (v === undefined ? '–' : `${(100 * v).toFixed(0)}%`);
  if (q.dvae) {
    const d = q.dvae;
    return `dvae step ${q.step}: codes ${d.codesUsed} (perplexity ${d.perplexity}), ${d.split} mse ${d.mse}${d.accuracy ? `, reconstructions right ${pct(d.accuracy.all)}, colours ${d.colorsDistinct}/6` : ''}`;
  }
  const t = q.transformer!;
  const info = Object.entries(t.captionInformation)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
  const s = t.samples;
  return `transformer step ${q.step}: caption information ${info} nats/token${s ? `; samples right seen ${pct(s.seen.all)}, held-out ${pct(s.heldOut.all)}` : ''}`;
}
