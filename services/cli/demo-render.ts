// The demo's pictures: a grid of generated images with the prompts as row labels, and loss curves (SVG
// written by hand: no plotting dependency).
import { labelledGridPng as grid } from '../../data/image-grid.ts';
import type { QualityPoint } from '../../contract/index.ts';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Rows of images (PNG bytes), each labelled with its prompt. */
export function labelledGridPng(rows: { prompt: string; pngs: Uint8Array[] }[]): Promise<Buffer> {
  return grid(rows.map((r) => ({ label: r.prompt, pngs: r.pngs })));
}

export interface LossPoint {
  stage: 'dvae' | 'transformer';
  step: number;
  loss: number;
}

/** One panel per stage, loss against step, log-free linear axes with min/max labels. */
export function lossCurvesSvg(points: LossPoint[], w = 420, h = 260): string {
  const panels = (['dvae', 'transformer'] as const).map((stage, i) => {
    const pts = points.filter((p) => p.stage === stage && Number.isFinite(p.loss));
    const x0 = 50 + i * (w + 30);
    const title = `<text x="${x0}" y="20" font-family="sans-serif" font-size="14">${stage === 'dvae' ? 'dVAE (−ELBO per pixel-channel)' : 'transformer (1/8 text + 7/8 image CE)'}</text>`;
    if (pts.length < 2)
      return `${title}<text x="${x0}" y="60" font-family="sans-serif" font-size="12">no data</text>`;
    const [sMin, sMax] = [pts[0]!.step, pts.at(-1)!.step];
    const lo = Math.min(...pts.map((p) => p.loss));
    const hi = Math.max(...pts.map((p) => p.loss));
    const X = (s: number) => x0 + ((s - sMin) / Math.max(1, sMax - sMin)) * w;
    const Y = (l: number) => 30 + (1 - (l - lo) / Math.max(1e-12, hi - lo)) * h;
    const path = pts
      .map((p, k) => `${k ? 'L' : 'M'}${X(p.step).toFixed(1)},${Y(p.loss).toFixed(1)}`)
      .join(' ');
    return [
      title,
      `<rect x="${x0}" y="30" width="${w}" height="${h}" fill="none" stroke="#999"/>`,
      `<path d="${path}" fill="none" stroke="${stage === 'dvae' ? '#1f77b4' : '#d62728'}" stroke-width="1.5"/>`,
      `<text x="${x0 - 4}" y="38" font-family="sans-serif" font-size="10" text-anchor="end">${hi.toFixed(3)}</text>`,
      `<text x="${x0 - 4}" y="${30 + h}" font-family="sans-serif" font-size="10" text-anchor="end">${lo.toFixed(3)}</text>`,
      `<text x="${x0}" y="${h + 45}" font-family="sans-serif" font-size="10">step ${sMin}</text>`,
      `<text x="${x0 + w}" y="${h + 45}" font-family="sans-serif" font-size="10" text-anchor="end">step ${sMax}</text>`,
    ].join('');
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * w + 110}" height="${h + 60}"><rect width="100%" height="100%" fill="#fff"/>${panels.join('')}</svg>\n`;
}

export interface Series {
  label: string;
  color: string;
  points: { x: number; y: number }[];
}

/** One line-chart panel: series over a shared x axis, y from 0 (or the data's minimum) to the maximum. */
function panelSvg(
  title: string,
  series: Series[],
  o: { x0: number; y0: number; w: number; h: number; xLabel: string; yFormat: (v: number) => string },
): string {
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p.y));
  const head = `<text x="${o.x0}" y="${o.y0 - 10}" font-family="sans-serif" font-size="13">${esc(title)}</text>`;
  if (pts.length === 0)
    return `${head}<text x="${o.x0}" y="${o.y0 + 20}" font-family="sans-serif" font-size="12">no data</text>`;
  const xMin = Math.min(...pts.map((p) => p.x));
  const xMax = Math.max(...pts.map((p) => p.x));
  const lo = Math.min(0, ...pts.map((p) => p.y));
  const hi = Math.max(...pts.map((p) => p.y), lo + 1e-9);
  const X = (x: number) => o.x0 + ((x - xMin) / Math.max(1e-9, xMax - xMin)) * o.w;
  const Y = (y: number) => o.y0 + (1 - (y - lo) / (hi - lo)) * o.h;
  const lines = series.map((s, k) => {
    const p = s.points.filter((q) => Number.isFinite(q.y));
    const d = p.map((q, i) => `${i ? 'L' : 'M'}${X(q.x).toFixed(1)},${Y(q.y).toFixed(1)}`).join(' ');
    const dots = p.map(
      (q) => `<circle cx="${X(q.x).toFixed(1)}" cy="${Y(q.y).toFixed(1)}" r="2" fill="${s.color}"/>`,
    );
    const legend = `<text x="${o.x0 + 8}" y="${o.y0 + 14 + 14 * k}" font-family="sans-serif" font-size="11" fill="${s.color}">${esc(s.label)}</text>`;
    return `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="1.5"/>${dots.join('')}${legend}`;
  });
  return [
    head,
    `<rect x="${o.x0}" y="${o.y0}" width="${o.w}" height="${o.h}" fill="none" stroke="#999"/>`,
    ...lines,
    `<text x="${o.x0 - 4}" y="${o.y0 + 8}" font-family="sans-serif" font-size="10" text-anchor="end">${o.yFormat(hi)}</text>`,
    `<text x="${o.x0 - 4}" y="${o.y0 + o.h}" font-family="sans-serif" font-size="10" text-anchor="end">${o.yFormat(lo)}</text>`,
    `<text x="${o.x0}" y="${o.y0 + o.h + 14}" font-family="sans-serif" font-size="10">${xMin.toFixed(1)}</text>`,
    `<text x="${o.x0 + o.w}" y="${o.y0 + o.h + 14}" font-family="sans-serif" font-size="10" text-anchor="end">${xMax.toFixed(1)} ${esc(o.xLabel)}</text>`,
  ].join('');
}

/** Panels side by side, each `{ title, series, yFormat }`, sharing the x label. */
export function chartsSvg(
  panels: { title: string; series: Series[]; yFormat?: (v: number) => string }[],
  xLabel: string,
  w = 300,
  h = 200,
): string {
  const body = panels.map((p, i) =>
    panelSvg(p.title, p.series, {
      x0: 50 + i * (w + 70),
      y0: 40,
      w,
      h,
      xLabel,
      yFormat: p.yFormat ?? ((v) => v.toFixed(2)),
    }),
  );
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${panels.length * (w + 70) + 30}" height="${h + 70}"><rect width="100%" height="100%" fill="#fff"/>${body.join('')}</svg>\n`;
}

/** The quality measured at checkpoints against minutes since `t0` (ms): dVAE reconstructions and codebook,
 *  then the transformer's caption information and sample accuracy. */
export function qualityCurvesSvg(points: QualityPoint[], t0: number): string {
  const min = (q: QualityPoint) => (q.at - t0) / 60_000;
  const dv = points.filter((q) => q.dvae);
  const tr = points.filter((q) => q.transformer);
  const pct = (v: number) => `${(100 * v).toFixed(0)}%`;
  const line = (
    label: string,
    color: string,
    qs: QualityPoint[],
    y: (q: QualityPoint) => number | undefined,
  ) => ({
    label,
    color,
    points: qs.flatMap((q) => {
      const v = y(q);
      return v === undefined ? [] : [{ x: min(q), y: v }];
    }),
  });
  return chartsSvg(
    [
      {
        title: 'dVAE: held-out reconstructions right',
        yFormat: pct,
        series: [
          line('all four', '#1f77b4', dv, (q) => q.dvae!.accuracy?.all),
          line('colour', '#ff7f0e', dv, (q) => q.dvae!.accuracy?.color),
          line('shape', '#2ca02c', dv, (q) => q.dvae!.accuracy?.shape),
        ],
      },
      {
        title: 'dVAE: codebook',
        yFormat: (v) => v.toFixed(0),
        series: [
          line('codes used', '#1f77b4', dv, (q) => q.dvae!.codesUsed),
          line('perplexity', '#9467bd', dv, (q) => q.dvae!.perplexity),
        ],
      },
      {
        title: 'transformer: caption information (nats/token)',
        series: [
          line('seen', '#2ca02c', tr, (q) => q.transformer!.captionInformation.seen),
          line('held-out', '#d62728', tr, (q) => q.transformer!.captionInformation.heldOut),
          line('train', '#7f7f7f', tr, (q) => q.transformer!.captionInformation.train),
        ],
      },
      {
        title: 'transformer: samples right (all four)',
        yFormat: pct,
        series: [
          line('seen', '#2ca02c', tr, (q) => q.transformer!.samples?.seen.all),
          line('held-out', '#d62728', tr, (q) => q.transformer!.samples?.heldOut.all),
        ],
      },
    ],
    'min',
  );
}
