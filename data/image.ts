// Image decoding for every dataset: sharp (libvips) turns JPEG/PNG/WebP bytes into packed RGB, EXIF
// orientation applied, alpha composited onto white, grey and CMYK converted to sRGB.
import sharp from 'sharp';

/** File extensions the file-backed datasets treat as images (lowercase, with the dot). */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.webp'];

/** Images with more pixels are skipped (`too-large`), and sharp refuses to decode them: far above any
 *  photograph a 256² model trains on (a 24-megapixel camera image is 0.6 of it), far below a bomb. */
export const MAX_IMAGE_PIXELS = 40_000_000;

/** Aspect ratios (width / height) outside [1/2, 2] are skipped, as the paper's filter does. */
export const MIN_ASPECT = 1 / 2;
export const MAX_ASPECT = 2;

/** Packed RGB: `rgb[(y·width + x)·3 + c]`. */
export interface DecodedImage {
  rgb: Uint8Array; // [height, width, 3]
  width: number;
  height: number;
}

/** Bytes sharp could not decode (unsupported format, truncated or corrupt data). */
export class ImageDecodeError extends Error {
  override name = 'ImageDecodeError';
  constructor(
    /** Which item: a file path or a shard/key. */
    readonly key: string,
    readonly reason: string,
  ) {
    super(`cannot decode image ${key}: ${reason}`);
  }
}

/** Decode image bytes (or a file path) to RGB. `failOn: 'warning'` makes truncated files fail here
 *  instead of decoding to grey garbage. Throws ImageDecodeError naming `key`. */
export async function decodeImage(
  input: Uint8Array | string,
  key = typeof input === 'string' ? input : '(bytes)',
): Promise<DecodedImage> {
  try {
    const { data, info } = await sharp(input, {
      failOn: 'warning',
      autoOrient: true,
      limitInputPixels: MAX_IMAGE_PIXELS,
    })
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels, expected 3`);
    return {
      rgb: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
    };
  } catch (e) {
    if (e instanceof ImageDecodeError) throw e;
    throw new ImageDecodeError(key, (e as Error).message.split('\n')[0]);
  }
}

/** Width and height after EXIF orientation, from the header only (cheap). Throws ImageDecodeError. */
export async function probeImage(
  input: Uint8Array | string,
  key = typeof input === 'string' ? input : '(bytes)',
): Promise<{ width: number; height: number }> {
  try {
    const m = await sharp(input, { failOn: 'warning', limitInputPixels: false }).metadata();
    const { width, height } = m.autoOrient ?? m;
    if (!width || !height) throw new Error('no dimensions in header');
    return { width, height };
  } catch (e) {
    throw new ImageDecodeError(key, (e as Error).message.split('\n')[0]);
  }
}

/** Whether width/height lies in [MIN_ASPECT, MAX_ASPECT]. */
export function aspectOk(width: number, height: number): boolean {
  const r = width / height;
  return r >= MIN_ASPECT && r <= MAX_ASPECT;
}

/** Encode packed RGB as PNG bytes (lossless, so decoding gives the same pixels back). */
export async function encodePng(rgb: Uint8Array, width: number, height: number): Promise<Buffer> {
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}
