// The few dense kernels PowerSGD needs, on row-major Float32Arrays with float64 accumulation (so the
// result does not depend on summation length and stays deterministic). A gradient G is stored [a, b];
// a tall/skinny factor is [a, r] or [b, r] with r small. Loops run along rows so every inner loop is
// contiguous.

/** out [a, r] = G [a, b] · X [b, r] */
export function mulGX(G: Float32Array, a: number, b: number, X: Float32Array, r: number, out = new Float32Array(a * r)): Float32Array {
  const acc = new Float64Array(r);
  const Xd = Float64Array.from(X);
  for (let i = 0; i < a; i++) {
    acc.fill(0);
    const row = i * b;
    for (let k = 0; k < b; k++) {
      const g = G[row + k]!;
      const base = k * r;
      for (let j = 0; j < r; j++) acc[j]! += g * Xd[base + j]!;
    }
    const o = i * r;
    for (let j = 0; j < r; j++) out[o + j] = acc[j]!;
  }
  return out;
}

/** out [b, r] = Gᵀ · Y, with G [a, b] and Y [a, r] */
export function mulGtY(G: Float32Array, a: number, b: number, Y: Float32Array, r: number, out = new Float32Array(b * r)): Float32Array {
  const acc = new Float64Array(b * r);
  const yi = new Float64Array(r);
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < r; j++) yi[j] = Y[i * r + j]!;
    const row = i * b;
    for (let k = 0; k < b; k++) {
      const g = G[row + k]!;
      const base = k * r;
      for (let j = 0; j < r; j++) acc[base + j]! += g * yi[j]!;
    }
  }
  for (let i = 0; i < acc.length; i++) out[i] = acc[i]!;
  return out;
}

/** out [a, b] = L [a, r] · R [b, r]ᵀ */
export function mulLRt(L: Float32Array, R: Float32Array, a: number, b: number, r: number, out = new Float32Array(a * b)): Float32Array {
  const Rd = Float64Array.from(R);
  const li = new Float64Array(r);
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < r; j++) li[j] = L[i * r + j]!;
    const row = i * b;
    for (let k = 0; k < b; k++) {
      const base = k * r;
      let s = 0;
      for (let j = 0; j < r; j++) s += li[j]! * Rd[base + j]!;
      out[row + k] = s;
    }
  }
  return out;
}

/** G [a, b] −= L [a, r] · R [b, r]ᵀ, in place */
export function subLRt(G: Float32Array, L: Float32Array, R: Float32Array, a: number, b: number, r: number): Float32Array {
  const Rd = Float64Array.from(R);
  const li = new Float64Array(r);
  for (let i = 0; i < a; i++) {
    for (let j = 0; j < r; j++) li[j] = L[i * r + j]!;
    const row = i * b;
    for (let k = 0; k < b; k++) {
      const base = k * r;
      let s = 0;
      for (let j = 0; j < r; j++) s += li[j]! * Rd[base + j]!;
      G[row + k] = G[row + k]! - s;
    }
  }
  return G;
}
