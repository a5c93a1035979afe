// RGB pixels ↔ PNG bytes, and the contact sheet of several images. sharp (libvips) encodes off the main
// thread, so PNG work never delays a token step; the same pixels always give the same bytes.
import sharp from 'sharp';

/** PNG of one RGB image [height, width, 3]. */
export async function encodePng(rgb: Uint8Array, width: number, height: number): Promise<Buffer> {
  if (rgb.length !== width * height * 3)
    throw new RangeError(`encodePng: ${rgb.length} bytes for ${width}×${height}×3`);
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: 6, adaptiveFiltering: false })
    .toBuffer();
}

/** Pixels of a PNG as RGB [height, width, 3] (alpha dropped). */
export async function decodePng(
  png: Uint8Array,
): Promise<{ rgb: Uint8Array; width: number; height: number }> {
  const { data, info } = await sharp(png)
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  return {
    rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: info.width,
    height: info.height,
  };
}

/** One PNG with the images in a near-square grid (row-major), `gap` pixels of white between them. */
export async function gridPng(pngs: Uint8Array[], gap = 2): Promise<Buffer> {
  if (pngs.length === 0) throw new RangeError('gridPng: no images');
  const imgs = await Promise.all(pngs.map(decodePng));
  const w = Math.max(...imgs.map((i) => i.width));
  const h = Math.max(...imgs.map((i) => i.height));
  const cols = Math.ceil(Math.sqrt(imgs.length));
  const rows = Math.ceil(imgs.length / cols);
  const W = cols * w + (cols - 1) * gap;
  const H = rows * h + (rows - 1) * gap;
  const out = new Uint8Array(W * H * 3).fill(255);
  imgs.forEach((img, k) => {
    const x0 = (k % cols) * (w + gap);
    const y0 = Math.floor(k / cols) * (h + gap);
    for (let y = 0; y < img.height; y++) {
      out.set(img.rgb.subarray(y * img.width * 3, (y + 1) * img.width * 3), ((y0 + y) * W + x0) * 3);
    }
  });
  return encodePng(out, W, H);
}
