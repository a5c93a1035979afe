// The demo's pictures: a grid of generated images with the prompts as row labels (PNG, via sharp's SVG
// text rendering), and loss curves (SVG written by hand: no plotting dependency).
import sharp, { type OverlayOptions } from 'sharp';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Rows of images (PNG bytes) with a text label each; images upscaled ×`zoom` with nearest neighbour. */
export async function labelledGridPng(
  rows: { prompt: string; pngs: Uint8Array[] }[],
  zoom = 3,
  labelWidth = 330,
  gap = 6,
): Promise<Buffer> {
  const first = await sharp(rows[0]!.pngs[0]!).metadata();
  const side = (first.width ?? 32) * zoom;
  const cols = Math.max(...rows.map((r) => r.pngs.length));
  const W = labelWidth + cols * (side + gap) + gap;
  const H = rows.length * (side + gap) + gap;
  const composites: OverlayOptions[] = [];
  const labels: string[] = [];
  for (const [r, row] of rows.entries()) {
    const y = gap + r * (side + gap);
    labels.push(
      `<text x="8" y="${y + side / 2 + 5}" font-family="DejaVu Sans, sans-serif" font-size="14" fill="#222">${esc(row.prompt)}</text>`,
    );
    for (const [c, png] of row.pngs.entries()) {
      const img = await sharp(png).resize(side, side, { kernel: 'nearest' }).png().toBuffer();
      composites.push({ input: img, left: labelWidth + gap + c * (side + gap), top: y });
    }
  }
  const svg = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${labels.join('')}</svg>`,
  );
  return sharp({ create: { width: W, height: H, channels: 3, background: '#ffffff' } })
    .composite([{ input: svg, left: 0, top: 0 }, ...composites])
    .png()
    .toBuffer();
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
