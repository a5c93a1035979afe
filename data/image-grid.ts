// A labelled contact sheet: rows of small images, each row with a text label on its left, as one PNG. The
// demo's grid and the sample grids stored with training checkpoints are drawn by it (labels are rendered by
// libvips from SVG text, so a grid is readable on its own, outside any viewer).
import sharp, { type OverlayOptions } from 'sharp';

export interface GridRow {
  label: string;
  /** PNG bytes of equally sized images. */
  pngs: Uint8Array[];
}

export interface GridOptions {
  /** Nearest-neighbour upscaling of every image (small images stay crisp). Default 3. */
  zoom?: number;
  /** Pixels of white around and between images. Default 6. */
  gap?: number;
  /** Width of the label column; default fits the longest label at 14 px type (120 to 560 px). */
  labelWidth?: number;
}

/** The longest label drawn in full; longer ones end in an ellipsis. */
const MAX_LABEL_CHARS = 72;

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function clip(label: string): string {
  return label.length > MAX_LABEL_CHARS ? `${label.slice(0, MAX_LABEL_CHARS - 1)}…` : label;
}

export async function labelledGridPng(rows: GridRow[], opts: GridOptions = {}): Promise<Buffer> {
  const first = rows.find((r) => r.pngs.length > 0)?.pngs[0];
  if (!first) throw new RangeError('labelledGridPng: no images');
  const zoom = opts.zoom ?? 3;
  const gap = opts.gap ?? 6;
  const labels = rows.map((r) => clip(r.label));
  const labelWidth =
    opts.labelWidth ??
    Math.min(560, Math.max(120, Math.ceil(Math.max(...labels.map((l) => l.length)) * 7.6)));
  const meta = await sharp(first).metadata();
  const side = (meta.width ?? 32) * zoom;
  const cols = Math.max(...rows.map((r) => r.pngs.length));
  const W = labelWidth + cols * (side + gap) + gap;
  const H = rows.length * (side + gap) + gap;
  const composites: OverlayOptions[] = [];
  const text: string[] = [];
  for (const [r, row] of rows.entries()) {
    const y = gap + r * (side + gap);
    text.push(
      `<text x="8" y="${y + side / 2 + 5}" font-family="DejaVu Sans, sans-serif" font-size="14" fill="#222">${esc(labels[r]!)}</text>`,
    );
    for (const [c, png] of row.pngs.entries()) {
      const img = await sharp(png).resize(side, side, { kernel: 'nearest' }).png().toBuffer();
      composites.push({ input: img, left: labelWidth + gap + c * (side + gap), top: y });
    }
  }
  const svg = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${text.join('')}</svg>`,
  );
  return sharp({ create: { width: W, height: H, channels: 3, background: '#ffffff' } })
    .composite([{ input: svg, left: 0, top: 0 }, ...composites])
    .png()
    .toBuffer();
}
