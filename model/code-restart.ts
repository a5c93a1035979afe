// Dead-code restarts for the dVAE codebook (the VQ-VAE field's remedy for codebook collapse, here in the
// form a Gumbel dVAE allows): a code that no cell has picked for a whole window is restarted as a copy of
// the busiest code, so the two split that code's cells between them and then drift apart.
//
// Usage is read from the averaged gradient, so every rank takes the same decisions with no extra
// communication: with straight-through codes the decoder sees one-hot codes, so row k of the gradient of
// `decoder.input.w` (the codebook, all-reduced uncompressed) is non-zero exactly when some cell of the
// global batch used code k, and its norm grows with how many cells did and how badly they are decoded.
// A restart copies code j into code k everywhere the codebook lives: the encoder's output weights and
// bias (column k of the logits), the decoder's embedding row k, their Adam moments and their EMA, with a
// small deterministic perturbation of the encoder column so that the Gumbel noise, not a tie, decides.
import { normals, RngStream } from '../random/index.ts';

/** The codebook's tensors as flat arrays (row-major), in the layout of model/dvae.ts. */
export interface CodebookArrays {
  /** encoder.output.w [C, K] (its 1×1 kernel [1, 1, C, K]). */
  encW: Float32Array;
  /** encoder.output.b [K]. */
  encB: Float32Array;
  /** decoder.input.w [K, E] (its 1×1 kernel [1, 1, K, E]). */
  decW: Float32Array;
}

export interface Restart {
  /** The dead code that is restarted. */
  dead: number;
  /** The busy code it becomes a copy of. */
  source: number;
}

/** Per-code statistics over the current window. */
export class CodeUsage {
  /** Updates since each code was last used. */
  readonly idle: Int32Array;
  /** Σ over the window of the norm of each code's gradient row: how much each code carries. */
  readonly load: Float32Array;

  constructor(readonly codebookSize: number) {
    this.idle = new Int32Array(codebookSize);
    this.load = new Float32Array(codebookSize);
  }

  /** Observes one update's averaged gradient of decoder.input.w, [K, E]. */
  observe(decoderGrad: Float32Array): void {
    const K = this.codebookSize;
    const E = decoderGrad.length / K;
    const rowSq = new Float64Array(K);
    for (let k = 0; k < K; k++) for (let e = 0; e < E; e++) rowSq[k]! += decoderGrad[k * E + e]! ** 2;
    this.observeRows(rowSq);
  }

  /** The same from each code's Σg² over its gradient row (what ranks holding pieces of the rows can sum
   *  between them). */
  observeRows(rowSq: ArrayLike<number>): void {
    for (let k = 0; k < this.codebookSize; k++) {
      const s = rowSq[k]!;
      if (s > 0) {
        this.idle[k] = 0;
        this.load[k]! += Math.sqrt(s);
      } else this.idle[k]! += 1;
    }
  }

  /** Codes idle for at least `window` updates, each paired with the busiest code not yet split this round
   *  (ties by the lower index); the load of the window is then cleared. At most half the live codes are
   *  split in one round. */
  plan(window: number): Restart[] {
    const dead = [...this.idle.keys()].filter((k) => this.idle[k]! >= window);
    const live = [...this.idle.keys()]
      .filter((k) => this.idle[k]! < window)
      .sort((a, b) => this.load[b]! - this.load[a]! || a - b);
    const n = Math.min(dead.length, Math.floor(live.length / 2));
    const out = Array.from({ length: n }, (_, i) => ({ dead: dead[i]!, source: live[i]! }));
    this.load.fill(0);
    for (const r of out) this.idle[r.dead] = 0;
    return out;
  }
}

/** Copies each restart's source code into its dead code, in place (see the file header); the encoder
 *  column is perturbed by `jitter` × its own RMS, drawn from (seed, step). */
export function restartCodes(
  a: CodebookArrays,
  restarts: readonly Restart[],
  opts: { seed: number; step: number; jitter: number },
): void {
  const K = a.encB.length;
  const C = a.encW.length / K;
  const E = a.decW.length / K;
  restarts.forEach((r, i) => {
    const z = opts.jitter > 0 ? noise(opts, i, C) : undefined;
    const rms = columnRms(a.encW, K, r.source);
    for (let c = 0; c < C; c++)
      a.encW[c * K + r.dead] = a.encW[c * K + r.source]! + (z ? opts.jitter * rms * z[c]! : 0);
    a.encB[r.dead] = a.encB[r.source]!;
    a.decW.copyWithin(r.dead * E, r.source * E, (r.source + 1) * E);
  });
}

/** The VQ form: the codebook holds the codes alone (rows of `decW` [K, E]); a dead code becomes its source
 *  row perturbed by `jitter` × the row's RMS, so nearest-code assignment splits the source's cells. */
export function restartCodebookRows(
  decW: Float32Array,
  K: number,
  restarts: readonly Restart[],
  opts: { seed: number; step: number; jitter: number },
): void {
  const E = decW.length / K;
  restarts.forEach((r, i) => {
    const z = opts.jitter > 0 ? noise(opts, i, E) : undefined;
    let rms = 0;
    for (let e = 0; e < E; e++) rms += decW[r.source * E + e]! ** 2;
    rms = Math.sqrt(rms / E);
    for (let e = 0; e < E; e++)
      decW[r.dead * E + e] = decW[r.source * E + e]! + (z ? opts.jitter * rms * z[e]! : 0);
  });
}

function noise(opts: { seed: number; step: number }, i: number, n: number): Float32Array {
  return normals({ seed: opts.seed, stream: RngStream.codeRestart, step: opts.step, rank: i }, n);
}

function columnRms(w: Float32Array, K: number, k: number): number {
  const C = w.length / K;
  let s = 0;
  for (let c = 0; c < C; c++) s += w[c * K + k]! ** 2;
  return Math.sqrt(s / C);
}

/** The same copies without perturbation, for arrays that follow the parameters (Adam moments, EMA). */
export function copyCodes(a: CodebookArrays, restarts: readonly Restart[]): void {
  restartCodes(a, restarts, { seed: 0, step: 0, jitter: 0 });
}

/** The parameters a restart rewrites: the codebook alone (VQ), or also the encoder's logits (Gumbel). */
export function restartedParams(quantizer: 'gumbel' | 'vq' | 'continuous'): string[] {
  return quantizer === 'vq'
    ? ['decoder.input.w']
    : ['encoder.output.w', 'encoder.output.b', 'decoder.input.w'];
}

function at(m: ReadonlyMap<string, Float32Array>, name: string): Float32Array {
  const a = m.get(name);
  if (!a) throw new Error(`code restart: no array for ${name}`);
  return a;
}

/** The codebook's arrays among arrays named as the parameters (`restartedParams('gumbel')`). */
export function codebookOf(m: ReadonlyMap<string, Float32Array>): CodebookArrays {
  return { encW: at(m, 'encoder.output.w'), encB: at(m, 'encoder.output.b'), decW: at(m, 'decoder.input.w') };
}

/** Applies `plan` to whole arrays of the restarted parameters (by name): their values perturbed, each
 *  follower (Adam moments, EMA: arrays shaped like the parameters) copied plainly. Wherever the arrays live
 *  (one trainer's optimizer, or gathered from the shards of a host) the result is the same. */
export function applyRestarts(
  quantizer: 'gumbel' | 'vq' | 'continuous',
  codebookSize: number,
  plan: readonly Restart[],
  values: ReadonlyMap<string, Float32Array>,
  followers: readonly ReadonlyMap<string, Float32Array>[],
  opts: { seed: number; step: number; jitter: number },
): void {
  const still = { seed: 0, step: 0, jitter: 0 };
  if (quantizer === 'vq') {
    restartCodebookRows(at(values, 'decoder.input.w'), codebookSize, plan, opts);
    for (const f of followers) restartCodebookRows(at(f, 'decoder.input.w'), codebookSize, plan, still);
    return;
  }
  restartCodes(codebookOf(values), plan, opts);
  for (const f of followers) copyCodes(codebookOf(f), plan);
}
