// IEEE 754 binary16 on the wire: float32 → float16 with round-to-nearest-even (subnormals kept, overflow
// → ±Inf, NaN stays NaN), and back through a 64 Ki-entry table. Overflow must become Inf, never a clamp:
// the gradient scaler learns from the non-finite values it produces.

const DECODE = buildDecodeTable();

function buildDecodeTable(): Float32Array {
  const t = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 0) t[h] = sign * m * 2 ** -24;
    else if (e === 31) t[h] = m ? NaN : sign * Infinity;
    else t[h] = sign * (1 + m / 1024) * 2 ** (e - 15);
  }
  return t;
}

/** Largest finite float16. */
export const FP16_MAX = 65504;

/** Encodes `src` into `dst` (same length). */
export function encodeFp16(src: Float32Array, dst: Uint16Array): Uint16Array {
  if (dst.length !== src.length)
    throw new RangeError(`encodeFp16: dst has ${dst.length} slots for ${src.length} values`);
  const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < bits.length; i++) {
    const x = bits[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    const mant = x & 0x7fffff;
    if (exp === 0xff) {
      dst[i] = sign | 0x7c00 | (mant ? 0x200 : 0);
      continue;
    }
    const e = exp - 112; // rebias 127 → 15
    if (e >= 31) {
      dst[i] = sign | 0x7c00;
    } else if (e <= 0) {
      if (e < -10) {
        dst[i] = sign; // below half the smallest subnormal: ±0
        continue;
      }
      const m = mant | 0x800000;
      const shift = 14 - e;
      let h = m >>> shift;
      const rem = m & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      if (rem > halfway || (rem === halfway && h & 1)) h++;
      dst[i] = sign | h;
    } else {
      let h = (e << 10) | (mant >>> 13);
      const rem = mant & 0x1fff;
      if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++; // a carry rolls into the exponent, up to Inf
      dst[i] = sign | h;
    }
  }
  return dst;
}

/** Decodes `src` into `dst` (same length). */
export function decodeFp16(src: Uint16Array, dst: Float32Array): Float32Array {
  if (dst.length !== src.length)
    throw new RangeError(`decodeFp16: dst has ${dst.length} slots for ${src.length} values`);
  for (let i = 0; i < src.length; i++) dst[i] = DECODE[src[i]!]!;
  return dst;
}

/** The float32 values that survive a trip through float16, in place. */
export function roundTripFp16(a: Float32Array): Float32Array {
  const h = encodeFp16(a, new Uint16Array(a.length));
  return decodeFp16(h, a);
}
