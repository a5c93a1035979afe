// Autoregressive image-token sampling with a KV cache (docs/model.md "Sampling"), at the granularity a
// server needs: `createSampler(model).start(rows)` gives a session whose `step()` advances every live
// row by one image token, so a gRPC handler can batch concurrent requests into one session, stream
// progress, and `cancel(row)` a request that went away: the row leaves the batch at the next step.
//
// Determinism: row r's token j is drawn with the uniform of the counter-based stream
// (seed_r, sampling, step = j, rank = index_r), so the same seed, index and weights give the same tokens
// whatever else is in the batch (rows are computed independently; nothing couples them).
//
// Classifier-free guidance (not in the paper; dalle-pytorch, dalle-mini): a row with guidanceScale s ≠ 1
// gets a partner row in the same session whose caption is empty (all padding) and which is fed the same
// tokens; the logits sampled from are u + s·(c − u), c the row's and u the partner's. Both rows live in the
// one KV cache, so a guided row costs one more row of the same batched pass, not a second pass.
//
// Filtering per row, in this order, on float64 copies of the logits: guidance, temperature (0 = argmax),
// top-k (0 = off), top-p nucleus (1 = off: the smallest set of most likely tokens whose mass reaches p),
// then inverse-CDF sampling. Ties in the ordering break by the lower token id.
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { RngStream, uniforms } from '../random/index.ts';
import { disposeCache, TokenInputError, type KvCache, type Transformer } from './transformer.ts';

export interface SampleRow {
  /** [textLen] BPE ids, 0-padded (the tokenizer's `encode(...).ids`). */
  text: Int32Array;
  /** Softmax temperature; 0 takes the argmax. Default 1 (the paper's). */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 (default) keeps all. */
  topK?: number;
  /** Nucleus mass in (0, 1]; 1 (default) keeps all. */
  topP?: number;
  /** uint32; with `index`, fixes every random draw of this row. */
  seed: number;
  /** Image index within a request (the k of "n images per prompt"); a uint32, default 0. */
  index?: number;
  /** Classifier-free guidance scale s ≥ 0: logits u + s·(c − u) against the empty caption's u. 1
   *  (default) is plain conditional sampling and costs nothing; 0 ignores the caption. */
  guidanceScale?: number;
}

/** A sampling option out of range; `field` names it as a request would. */
export class SamplingOptionError extends Error {
  override name = 'SamplingOptionError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`sampling ${field} = ${String(value)}: ${rule}`);
  }
}

/** The session was used after it finished or was disposed, or a row index is unknown. */
export class SamplerSessionError extends Error {
  override name = 'SamplerSessionError';
  constructor(readonly reason: string) {
    super(`sampler session: ${reason}`);
  }
}

interface RowState {
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  index: number;
  guidanceScale: number;
  tokens: Int32Array;
  /** Tokens drawn for this row (stops growing when it is cancelled). */
  produced: number;
  cancelled: boolean;
}

export interface StepResult {
  /** Image tokens each live row has after this step (1..grid²). */
  position: number;
  /** Rows (indices into `start`'s array) that got a token in this step. */
  advanced: number[];
}

export interface SamplerSession {
  /** Rows started. */
  readonly size: number;
  /** Image tokens produced so far per live row. */
  readonly position: number;
  /** Every row has all grid² tokens or was cancelled (the cache is released then). */
  readonly done: boolean;
  /** Advances every live row by one image token (the first step runs the text prefix). */
  step(): StepResult;
  /** Drops a row: it takes no part in later steps. Idempotent. */
  cancel(row: number): void;
  isCancelled(row: number): boolean;
  /** Tokens of `row` so far (grid² once done; fewer for a cancelled row); a copy. */
  tokens(row: number): Int32Array;
  /** Releases the cache early (a cancelled request). */
  dispose(): void;
}

export interface Sampler {
  readonly model: Transformer;
  start(rows: SampleRow[]): SamplerSession;
}

function checkUint32(field: string, v: number): void {
  if (!(Number.isInteger(v) && v >= 0 && v < 2 ** 32))
    throw new SamplingOptionError(field, v, 'must be an integer in [0, 2^32)');
}

/** Validates one row's options against the model; returns them with defaults filled. */
export function resolveRow(
  model: Transformer,
  r: SampleRow,
  at = 0,
): Omit<RowState, 'tokens' | 'produced' | 'cancelled'> {
  const f = (name: string) => `rows[${at}].${name}`;
  if (typeof r !== 'object' || r === null)
    throw new SamplingOptionError(`rows[${at}]`, r, 'must be an object');
  try {
    model.checkTokens(r.text, 1);
  } catch (e) {
    if (e instanceof TokenInputError)
      throw new SamplingOptionError(f('text'), `${r.text?.length ?? 'no'} ids`, e.reason);
    throw e;
  }
  const temperature = r.temperature ?? 1;
  if (!(Number.isFinite(temperature) && temperature >= 0))
    throw new SamplingOptionError(f('temperature'), temperature, 'must be a finite number ≥ 0');
  const topK = r.topK ?? 0;
  if (!(Number.isInteger(topK) && topK >= 0))
    throw new SamplingOptionError(f('topK'), topK, 'must be an integer ≥ 0 (0 = off)');
  const topP = r.topP ?? 1;
  if (!(Number.isFinite(topP) && topP > 0 && topP <= 1))
    throw new SamplingOptionError(f('topP'), topP, 'must be in (0, 1] (1 = off)');
  checkUint32(f('seed'), r.seed);
  const index = r.index ?? 0;
  checkUint32(f('index'), index);
  const guidanceScale = r.guidanceScale ?? 1;
  if (!(Number.isFinite(guidanceScale) && guidanceScale >= 0))
    throw new SamplingOptionError(f('guidanceScale'), guidanceScale, 'must be a finite number ≥ 0 (1 = off)');
  return { temperature, topK, topP, seed: r.seed, index, guidanceScale };
}

/** Guided logits u + s·(c − u) in float64 (the cache-free reference uses the same rule). */
export function guidedLogits(
  cond: ArrayLike<number>,
  uncond: ArrayLike<number>,
  scale: number,
): Float64Array {
  const out = new Float64Array(cond.length);
  for (let i = 0; i < out.length; i++) out[i] = uncond[i]! + scale * (cond[i]! - uncond[i]!);
  return out;
}

/**
 * One token from a row of logits given a uniform u in (0, 1). Pure and deterministic; exported so the
 * cache-free reference and tests use exactly the same rule.
 */
export function pickToken(
  logits: ArrayLike<number>,
  opts: { temperature: number; topK: number; topP: number },
  u: number,
): number {
  const V = logits.length;
  if (opts.temperature === 0) {
    let best = 0;
    for (let i = 1; i < V; i++) if (logits[i]! > logits[best]!) best = i;
    return best;
  }
  const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
  const keep = opts.topK > 0 ? Math.min(opts.topK, V) : V;
  const top = logits[order[0]!]! / opts.temperature;
  const p = new Float64Array(keep);
  let total = 0;
  for (let i = 0; i < keep; i++) {
    p[i] = Math.exp(logits[order[i]!]! / opts.temperature - top);
    total += p[i]!;
  }
  let cut = keep;
  if (opts.topP < 1) {
    let mass = 0;
    for (let i = 0; i < keep; i++) {
      mass += p[i]! / total;
      if (mass >= opts.topP) {
        cut = i + 1;
        break;
      }
    }
  }
  let kept = 0;
  for (let i = 0; i < cut; i++) kept += p[i]!;
  const target = u * kept;
  let acc = 0;
  for (let i = 0; i < cut; i++) {
    acc += p[i]!;
    if (target < acc) return order[i]!;
  }
  return order[cut - 1]!;
}

/** The uniform that draws token j of a row. */
export function rowUniform(seed: number, index: number, j: number): number {
  return uniforms({ seed, stream: RngStream.sampling, step: j, rank: index }, 1)[0]!;
}

/** A row of the KV cache: a requested row's own, or the empty-caption partner of a guided one. */
interface CacheRow {
  row: number;
  uncond: boolean;
}

class Session implements SamplerSession {
  private readonly rows: RowState[];
  /** What each row of the cache holds, in cache order (see `layout`). */
  private inCache: CacheRow[] = [];
  private cache: KvCache | null = null;
  private pos = 0;
  private finished = false;
  private readonly texts: Int32Array[];

  constructor(
    private readonly model: Transformer,
    rows: SampleRow[],
  ) {
    if (!Array.isArray(rows) || rows.length === 0)
      throw new SamplingOptionError('rows', rows?.length, 'must be a non-empty array');
    const N = model.dims.imageLen;
    this.rows = rows.map((r, i) => ({
      ...resolveRow(model, r, i),
      tokens: new Int32Array(N),
      produced: 0,
      cancelled: false,
    }));
    this.texts = rows.map((r) => r.text.slice());
  }

  get size(): number {
    return this.rows.length;
  }

  get position(): number {
    return this.pos;
  }

  get done(): boolean {
    return this.finished;
  }

  private checkRow(row: number): RowState {
    const r = this.rows[row];
    if (!Number.isInteger(row) || !r)
      throw new SamplerSessionError(`row ${row} is not in [0, ${this.rows.length})`);
    return r;
  }

  isCancelled(row: number): boolean {
    return this.checkRow(row).cancelled;
  }

  cancel(row: number): void {
    this.checkRow(row).cancelled = true;
    if (this.rows.every((r) => r.cancelled)) this.finish();
  }

  tokens(row: number): Int32Array {
    const r = this.checkRow(row);
    return r.tokens.slice(0, r.produced);
  }

  /** The cache's rows for the live rows: each live row's own, then the empty-caption partner of each
   *  guided one, both in row order (so dropping rows keeps the survivors' order). */
  private layout(live: number[]): CacheRow[] {
    const guided = live.filter((row) => this.rows[row]!.guidanceScale !== 1);
    return [...live.map((row) => ({ row, uncond: false })), ...guided.map((row) => ({ row, uncond: true }))];
  }

  step(): StepResult {
    if (this.finished) throw new SamplerSessionError('step() after the session finished');
    const live = this.rows.flatMap((r, i) => (r.cancelled ? [] : [i]));
    const layout = this.layout(live);
    let logits: tf.Tensor2D;
    if (this.cache === null) {
      const L = this.model.dims.textLen;
      const text = new Int32Array(layout.length * L); // a partner's caption stays all padding
      layout.forEach((e, k) => {
        if (!e.uncond) text.set(this.texts[e.row]!, k * L);
      });
      const out = this.model.prefill(text, layout.length);
      this.cache = out.cache;
      logits = out.logits;
    } else {
      if (layout.length !== this.inCache.length) {
        // Cancelled since the last step: drop their rows (and partners) before computing anything.
        const keep = layout.map((e) =>
          this.inCache.findIndex((c) => c.row === e.row && c.uncond === e.uncond),
        );
        const smaller = this.model.selectRows(this.cache, keep);
        disposeCache(this.cache);
        this.cache = smaller;
      }
      const fed = Int32Array.from(layout, (e) => this.rows[e.row]!.tokens[this.pos - 1]!);
      const out = this.model.decode(this.cache, fed);
      disposeCache(this.cache);
      this.cache = out.cache;
      logits = out.logits;
    }
    this.inCache = layout;
    const values = logits.dataSync() as Float32Array;
    logits.dispose();
    const K = this.model.dims.imageVocab;
    const at = (k: number) => values.subarray(k * K, (k + 1) * K);
    let partner = live.length;
    live.forEach((row, k) => {
      const r = this.rows[row]!;
      const lg = r.guidanceScale === 1 ? at(k) : guidedLogits(at(k), at(partner++), r.guidanceScale);
      r.tokens[this.pos] = pickToken(lg, r, rowUniform(r.seed, r.index, this.pos));
      r.produced = this.pos + 1;
    });
    this.pos += 1;
    if (this.pos === this.model.dims.imageLen) this.finish();
    return { position: this.pos, advanced: live };
  }

  private finish(): void {
    this.finished = true;
    if (this.cache) disposeCache(this.cache);
    this.cache = null;
  }

  dispose(): void {
    this.finish();
  }
}

export function createSampler(model: Transformer): Sampler {
  return { model, start: (rows) => new Session(model, rows) };
}

export interface SampleOptions {
  /** Images for this caption (rows of one batch); default 1. */
  n?: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  seed: number;
  /** Classifier-free guidance scale (1 = off). */
  guidanceScale?: number;
}

/** n images' tokens for one caption, [n, grid²] row-major; image k uses (seed, index k). */
export function sampleImageTokens(model: Transformer, text: Int32Array, opts: SampleOptions): Int32Array {
  const n = opts.n ?? 1;
  if (!(Number.isInteger(n) && n >= 1)) throw new SamplingOptionError('n', n, 'must be a positive integer');
  const { temperature, topK, topP, seed, guidanceScale } = opts;
  const session = createSampler(model).start(
    Array.from({ length: n }, (_, index) => ({ text, temperature, topK, topP, seed, index, guidanceScale })),
  );
  try {
    while (!session.done) session.step();
    const N = model.dims.imageLen;
    const out = new Int32Array(n * N);
    for (let k = 0; k < n; k++) out.set(session.tokens(k), k * N);
    return out;
  } finally {
    session.dispose();
  }
}

/** What turns tokens into pixels: the dVAE's decoder (`Dvae.decode`), [n, grid²] → [n, res, res, 3]. */
export interface TokenDecoder {
  decode(tokens: Int32Array): Uint8Array;
}

/** PNG bytes of n RGB images packed [n, res, res, 3]. */
export async function rgbToPngs(rgb: Uint8Array, n: number): Promise<Uint8Array[]> {
  const per = rgb.length / n;
  const res = Math.round(Math.sqrt(per / 3));
  if (!(Number.isInteger(n) && n >= 1) || res * res * 3 !== per) {
    throw new SamplingOptionError('rgb', rgb.length, `is not n = ${n} square RGB images`);
  }
  return Promise.all(
    Array.from({ length: n }, async (_, k) => {
      const png = await sharp(rgb.subarray(k * per, (k + 1) * per), {
        raw: { width: res, height: res, channels: 3 },
      })
        .png()
        .toBuffer();
      return new Uint8Array(png.buffer, png.byteOffset, png.byteLength);
    }),
  );
}

/** tokens → dVAE decoder → PNG bytes, one per image. */
export async function tokensToPngs(
  decoder: TokenDecoder,
  tokens: Int32Array,
  n: number,
): Promise<Uint8Array[]> {
  return rgbToPngs(decoder.decode(tokens), n);
}
