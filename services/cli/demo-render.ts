// The demo's pictures: a grid of generated images with the prompts as row labels, and loss curves (SVG
// written by hand: no plotting dependency).
import { labelledGridPng as grid } from '../../data/image-grid.ts';

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
