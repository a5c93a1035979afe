// Codebook splitting for the Gumbel dVAE (the LBG algorithm's split step, aimed where the codebook loses
// information): a code whose cells differ in their pixels stands for several things at once, and the
// decoder can only paint their mean (on the shapes set: one code for the insides of yellow, orange and
// red figures, drawn as orange). Every `codeSplitEvery` updates the trainer encodes a fixed probe of
// training images, measures each code's distortion (Σ of the squared distance of its cells' pixels to
// their mean), and splits the worst codes into codes that no probe cell uses:
//   1. the code's cells are cut in two by 2-means on their pixels (started from their principal axis);
//   2. in the encoder's feature space (the input of the 1×1 logits conv) the halves' means differ by δ;
//   3. the dead code becomes a copy of the code whose logit weights are moved by +ε·δ/‖δ‖ and the code's own
//      by −ε·δ/‖δ‖, biases set so the two logits tie halfway between the halves: each half now prefers
//      its own code by 2 nats at its mean (ε‖δ‖ = 2), and the decoder row, copied, learns the difference.
// The plan is a pure function of the parameters and the probe, so every rank (same parameters, same
// probe) takes the same decision with no communication, and a resumed run takes it again.
import { copyCodes, type CodebookArrays } from './code-restart.ts';

/** One split: `dead` becomes the half of `source`'s cells on the +direction side. */
export interface CodeSplit {
  dead: number;
  source: number;
  /** Unit direction in feature space [C]. */
  direction: Float32Array;
  /** Logit step ε along the direction. */
  eps: number;
  /** Projection of the halfway point on the direction. */
  mid: number;
}

/** What the planner reads: per probe cell its code, its pixels (D values in [0, 1]) and its encoder
 *  features (C values). */
export interface SplitProbe {
  codes: Int32Array;
  pixels: Float32Array;
  features: Float32Array;
  codebookSize: number;
}

/** Logit gap ε‖δ‖ at each half's mean, nats. */
const GAP = 2;
const LLOYD_ITERATIONS = 8;

/** Per-code cell count and distortion Σ‖x − mean‖² over the probe. */
export function codeDistortion(p: SplitProbe): { count: Int32Array; distortion: Float64Array } {
  const K = p.codebookSize;
  const n = p.codes.length;
  const D = p.pixels.length / n;
  const count = new Int32Array(K);
  const sum = new Float64Array(K * D);
  const sq = new Float64Array(K);
  for (let i = 0; i < n; i++) {
    const k = p.codes[i]!;
    count[k]! += 1;
    for (let d = 0; d < D; d++) {
      const x = p.pixels[i * D + d]!;
      sum[k * D + d]! += x;
      sq[k]! += x * x;
    }
  }
  const distortion = new Float64Array(K);
  for (let k = 0; k < K; k++) {
    if (count[k] === 0) continue;
    let m2 = 0;
    for (let d = 0; d < D; d++) m2 += sum[k * D + d]! ** 2;
    distortion[k] = Math.max(0, sq[k]! - m2 / count[k]!);
  }
  return { count, distortion };
}

/** Up to `max` splits: the live codes of largest distortion (ties: lower index), each into the lowest
 *  unused code left. Codes whose cells cannot be cut (one distinct pixel pattern, or halves the encoder
 *  does not tell apart) are passed over. */
export function planSplits(p: SplitProbe, max: number): CodeSplit[] {
  const { count, distortion } = codeDistortion(p);
  const dead = [...count.keys()].filter((k) => count[k] === 0);
  const live = [...count.keys()]
    .filter((k) => count[k]! >= 2 && distortion[k]! > 1e-9)
    .sort((a, b) => distortion[b]! - distortion[a]! || a - b);
  const out: CodeSplit[] = [];
  for (const k of live) {
    if (out.length >= Math.min(max, dead.length)) break;
    const s = splitOne(p, k);
    if (s) out.push({ dead: dead[out.length]!, source: k, ...s });
  }
  return out;
}

function splitOne(p: SplitProbe, k: number): Omit<CodeSplit, 'dead' | 'source'> | undefined {
  const n = p.codes.length;
  const D = p.pixels.length / n;
  const C = p.features.length / n;
  const cells = [...p.codes.keys()].filter((i) => p.codes[i] === k);
  const mean = new Float64Array(D);
  for (const i of cells) for (let d = 0; d < D; d++) mean[d]! += p.pixels[i * D + d]! / cells.length;
  // Principal axis by power iteration, from the cell farthest from the mean (deterministic).
  const centred = (i: number, d: number) => p.pixels[i * D + d]! - mean[d]!;
  let far = cells[0]!;
  let farD = -1;
  for (const i of cells) {
    let s = 0;
    for (let d = 0; d < D; d++) s += centred(i, d) ** 2;
    if (s > farD) [far, farD] = [i, s];
  }
  let axis = Float64Array.from({ length: D }, (_, d) => centred(far, d));
  for (let it = 0; it < 16; it++) {
    const next = new Float64Array(D);
    for (const i of cells) {
      let dot = 0;
      for (let d = 0; d < D; d++) dot += centred(i, d) * axis[d]!;
      for (let d = 0; d < D; d++) next[d]! += dot * centred(i, d);
    }
    const norm = Math.hypot(...next);
    if (!(norm > 0)) return undefined;
    axis = next.map((v) => v / norm);
  }
  // 2-means on the pixels, started from the sign of the projection on the axis.
  let side = cells.map((i) => {
    let dot = 0;
    for (let d = 0; d < D; d++) dot += centred(i, d) * axis[d]!;
    return dot > 0;
  });
  for (let it = 0; it < LLOYD_ITERATIONS; it++) {
    const ma = meanOf(p.pixels, D, cells, side, true);
    const mb = meanOf(p.pixels, D, cells, side, false);
    if (!ma || !mb) return undefined;
    const next = cells.map((i) => dist2(p.pixels, i, D, ma) < dist2(p.pixels, i, D, mb));
    if (next.every((v, j) => v === side[j])) break;
    side = next;
  }
  const ha = meanOf(p.features, C, cells, side, true);
  const hb = meanOf(p.features, C, cells, side, false);
  if (!ha || !hb) return undefined;
  const delta = ha.map((v, c) => v - hb[c]!);
  const norm = Math.hypot(...delta);
  if (!(norm > 1e-6)) return undefined;
  const direction = Float32Array.from(delta, (v) => v / norm);
  let mid = 0;
  for (let c = 0; c < C; c++) mid += (direction[c]! * (ha[c]! + hb[c]!)) / 2;
  return { direction, eps: GAP / norm, mid };
}

function meanOf(
  a: Float32Array,
  D: number,
  cells: number[],
  side: boolean[],
  which: boolean,
): Float64Array | undefined {
  const m = new Float64Array(D);
  let n = 0;
  cells.forEach((i, j) => {
    if (side[j] !== which) return;
    n++;
    for (let d = 0; d < D; d++) m[d]! += a[i * D + d]!;
  });
  return n ? m.map((v) => v / n) : undefined;
}

function dist2(a: Float32Array, i: number, D: number, m: Float64Array): number {
  let s = 0;
  for (let d = 0; d < D; d++) s += (a[i * D + d]! - m[d]!) ** 2;
  return s;
}

/** Applies the splits to the parameters (see the file header) and copies each source into its dead code
 *  in every follower (Adam moments, EMA), in place. */
export function applySplits(
  values: CodebookArrays,
  followers: readonly CodebookArrays[],
  splits: readonly CodeSplit[],
): void {
  const K = values.encB.length;
  const C = values.encW.length / K;
  const E = values.decW.length / K;
  for (const s of splits) {
    if (s.direction.length !== C)
      throw new Error(`code split: direction has ${s.direction.length} values, the encoder ${C} channels`);
    for (let c = 0; c < C; c++) {
      const w = values.encW[c * K + s.source]!;
      const step = s.eps * s.direction[c]!;
      values.encW[c * K + s.dead] = w + step;
      values.encW[c * K + s.source] = w - step;
    }
    const b = values.encB[s.source]!;
    values.encB[s.dead] = b - s.eps * s.mid;
    values.encB[s.source] = b + s.eps * s.mid;
    values.decW.copyWithin(s.dead * E, s.source * E, (s.source + 1) * E);
  }
  for (const f of followers) copyCodes(f, splits);
}

/** Each probe cell's pixels, [n·g², c·c·3] in [0, 1], from images uint8 [n, R, R, 3] (cells of c = R/g). */
export function cellPixels(images: Uint8Array, resolution: number, grid: number): Float32Array {
  const c = resolution / grid;
  const n = images.length / (resolution * resolution * 3);
  const D = c * c * 3;
  const out = new Float32Array(n * grid * grid * D);
  for (let i = 0; i < n; i++)
    for (let gy = 0; gy < grid; gy++)
      for (let gx = 0; gx < grid; gx++) {
        const cell = (i * grid + gy) * grid + gx;
        let o = cell * D;
        for (let y = 0; y < c; y++) {
          const row = ((i * resolution + gy * c + y) * resolution + gx * c) * 3;
          for (let x = 0; x < c * 3; x++) out[o++] = images[row + x]! / 255;
        }
      }
  return out;
}
