// The few dense kernels PowerSGD needs, on row-major Float32Arrays with float64 accumulation (results do
// not depend on anything but the inputs: every rank computes the same bits). A gradient G is stored
// [a, b]; the skinny factors are [a, r] or [b, r] with r small. The factors are transposed to [r, ·] so
// that every inner loop runs over contiguous memory, and four columns of r are handled per pass so G is
// read ⌈r/4⌉ times: for small r these kernels stream G at memory speed.

function transpose(X: Float32Array, rows: number, cols: number): Float64Array {
  const t = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = X[i * cols + j]!;
  return t;
}

/** out [a, r] = G [a, b] · X [b, r] */
export function mulGX(
  G: Float32Array,
  a: number,
  b: number,
  X: Float32Array,
  r: number,
  out = new Float32Array(a * r),
): Float32Array {
  const XT = transpose(X, b, r); // [r, b]
  for (let i = 0; i < a; i++) {
    const row = i * b;
    let j = 0;
    for (; j + 4 <= r; j += 4) {
      const [x0, x1, x2, x3] = [j * b, (j + 1) * b, (j + 2) * b, (j + 3) * b];
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0; // prettier-ignore
      for (let k = 0; k < b; k++) {
        const g = G[row + k]!;
        s0 += g * XT[x0 + k]!;
        s1 += g * XT[x1 + k]!;
        s2 += g * XT[x2 + k]!;
        s3 += g * XT[x3 + k]!;
      }
      out[i * r + j] = s0;
      out[i * r + j + 1] = s1;
      out[i * r + j + 2] = s2;
      out[i * r + j + 3] = s3;
    }
    for (; j < r; j++) {
      const x0 = j * b;
      let s = 0;
      for (let k = 0; k < b; k++) s += G[row + k]! * XT[x0 + k]!;
      out[i * r + j] = s;
    }
  }
  return out;
}

/** out [b, r] = Gᵀ · Y, with G [a, b] and Y [a, r] */
export function mulGtY(
  G: Float32Array,
  a: number,
  b: number,
  Y: Float32Array,
  r: number,
  out = new Float32Array(b * r),
): Float32Array {
  const acc = new Float64Array(r * b); // [r, b]
  for (let i = 0; i < a; i++) {
    const row = i * b;
    const y = i * r;
    let j = 0;
    for (; j + 4 <= r; j += 4) {
      const [y0, y1, y2, y3] = [Y[y + j]!, Y[y + j + 1]!, Y[y + j + 2]!, Y[y + j + 3]!];
      const [a0, a1, a2, a3] = [j * b, (j + 1) * b, (j + 2) * b, (j + 3) * b];
      for (let k = 0; k < b; k++) {
        const g = G[row + k]!;
        acc[a0 + k]! += g * y0;
        acc[a1 + k]! += g * y1;
        acc[a2 + k]! += g * y2;
        acc[a3 + k]! += g * y3;
      }
    }
    for (; j < r; j++) {
      const yj = Y[y + j]!;
      const a0 = j * b;
      for (let k = 0; k < b; k++) acc[a0 + k]! += G[row + k]! * yj;
    }
  }
  for (let k = 0; k < b; k++) for (let j = 0; j < r; j++) out[k * r + j] = acc[j * b + k]!;
  return out;
}

/** rowOut[k] = Σ_j L[i, j] · R[k, j], for one row i (RT is R transposed, [r, b]). */
function lowRankRow(
  L: Float32Array,
  i: number,
  RT: Float64Array,
  b: number,
  r: number,
  rowOut: Float64Array,
): void {
  let j = 0;
  for (; j + 4 <= r; j += 4) {
    const [l0, l1, l2, l3] = [L[i * r + j]!, L[i * r + j + 1]!, L[i * r + j + 2]!, L[i * r + j + 3]!];
    const [r0, r1, r2, r3] = [j * b, (j + 1) * b, (j + 2) * b, (j + 3) * b];
    if (j === 0)
      for (let k = 0; k < b; k++)
        rowOut[k] = l0 * RT[r0 + k]! + l1 * RT[r1 + k]! + l2 * RT[r2 + k]! + l3 * RT[r3 + k]!;
    else
      for (let k = 0; k < b; k++)
        rowOut[k]! += l0 * RT[r0 + k]! + l1 * RT[r1 + k]! + l2 * RT[r2 + k]! + l3 * RT[r3 + k]!;
  }
  for (; j < r; j++) {
    const lj = L[i * r + j]!;
    const r0 = j * b;
    if (j === 0) for (let k = 0; k < b; k++) rowOut[k] = lj * RT[r0 + k]!;
    else for (let k = 0; k < b; k++) rowOut[k]! += lj * RT[r0 + k]!;
  }
  if (r === 0) rowOut.fill(0);
}

/** out [a, b] = L [a, r] · R [b, r]ᵀ */
export function mulLRt(
  L: Float32Array,
  R: Float32Array,
  a: number,
  b: number,
  r: number,
  out = new Float32Array(a * b),
): Float32Array {
  const RT = transpose(R, b, r);
  const row = new Float64Array(b);
  for (let i = 0; i < a; i++) {
    lowRankRow(L, i, RT, b, r, row);
    out.set(row, i * b);
  }
  return out;
}

/** G [a, b] −= L [a, r] · R [b, r]ᵀ, in place */
export function subLRt(
  G: Float32Array,
  L: Float32Array,
  R: Float32Array,
  a: number,
  b: number,
  r: number,
): Float32Array {
  const RT = transpose(R, b, r);
  const row = new Float64Array(b);
  for (let i = 0; i < a; i++) {
    lowRankRow(L, i, RT, b, r, row);
    const o = i * b;
    for (let k = 0; k < b; k++) G[o + k] = G[o + k]! - row[k]!;
  }
  return G;
}
