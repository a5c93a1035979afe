// The one-line summary of a checkpoint's quality measurements (contract/quality.ts), for logs and the CLI.

import type { QualityPoint } from '../contract/index.ts';

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
