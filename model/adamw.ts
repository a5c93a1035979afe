// AdamW (Loshchilov & Hutter) with decoupled weight decay, a per-parameter decay mask, optional
// global-norm clipping, a skip on non-finite gradients, and a parameter EMA. Shared by both stages.
//
// One update, per parameter p with gradient g (t counts applied updates, from 1):
//   m ← β1·m + (1−β1)·g          v ← β2·v + (1−β2)·g²
//   p ← p − lr·wd·p  (only where decay is on; PyTorch's convention: the decay follows the lr schedule)
//   p ← p − lr · (m / (1−β1^t)) / (√(v / (1−β2^t)) + ε)
//   ema ← d·ema + (1−d)·p
// The update runs in tfjs on the active backend, on ONE flat vector θ holding every parameter back to back
// (./param-vector.ts): a dozen kernels per step whatever the parameter count. Per-element it is the same
// arithmetic as per-parameter updates, so the bits do not depend on the layout. grads may be tensors or
// the Float32Arrays that come back from the all-reduce.
import * as tf from '@tensorflow/tfjs';
import type { ParamKind, ParamSpec } from './trainer.ts';

export interface AdamWConfig {
  /** Paper: 0.9 (both stages). */
  beta1: number;
  /** Paper: 0.999 (dVAE), 0.96 (transformer). */
  beta2: number;
  /** Paper: 1e-8. */
  eps: number;
  /** Decoupled weight decay, multiplied by lr (paper: 1e-4 dVAE, 4.5e-2 transformer). */
  weightDecay: number;
  /** Parameter EMA decay (paper: 0.999 dVAE, 0.99 transformer); 0 makes the EMA track params exactly. */
  emaDecay: number;
}

/** The AdamW fields of a stage's config (every stage names them alike). */
export interface StageAdamFields {
  adamBeta1: number;
  adamBeta2: number;
  adamEps: number;
  weightDecay: number;
  emaDecay: number;
}

/** A stage config's AdamW hyper-parameters. */
export function adamwConfigOf(c: StageAdamFields): AdamWConfig {
  return {
    beta1: c.adamBeta1,
    beta2: c.adamBeta2,
    eps: c.adamEps,
    weightDecay: c.weightDecay,
    emaDecay: c.emaDecay,
  };
}

/** An AdamW over a trainer's flat θ: one entry per parameter spec (`sizes` in the same order), decayed
 *  where `decays(kind)` says. */
export function adamwOverTheta(
  theta: tf.Variable,
  specs: readonly ParamSpec[],
  sizes: readonly number[],
  cfg: StageAdamFields,
  decays: (kind: ParamKind) => boolean = decaysByDefault,
): AdamW {
  return new AdamW(
    theta,
    specs.map((s, i) => ({ name: s.name, size: sizes[i]!, decay: decays(s.kind) })),
    adamwConfigOf(cfg),
  );
}

export interface AdamWParam {
  /** Unique name; keys the optimizer state (`<name>.m`, `<name>.v`, `<name>.ema`). */
  name: string;
  /** Elements of this parameter in the flat vector (parameters lie back to back, in this order). */
  size: number;
  /** Apply weight decay to this parameter (see `decaysByDefault`). */
  decay: boolean;
}

export interface AdamWStepOptions {
  /** Rescale all gradients together so their global L2 norm is at most this (paper stage 2: 4). */
  maxGradNorm?: number;
}

export interface AdamWStepResult {
  /** Global L2 norm of the gradients as given (before clipping). */
  gradNorm: number;
  /** The gradients were rescaled by maxGradNorm / gradNorm. */
  clipped: boolean;
  /** A gradient held Inf/NaN: nothing changed (params, moments, EMA, update count). */
  skipped: boolean;
  /** Updates applied so far, this one included. */
  updates: number;
}

/** Gradient list does not match the parameter list (count or sizes). */
export class GradientShapeError extends Error {
  override name = 'GradientShapeError';
  constructor(readonly problems: string[]) {
    super(`gradients do not match parameters:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** A hyper-parameter or step argument is out of range. */
export class AdamWConfigError extends Error {
  override name = 'AdamWConfigError';
  readonly fatal = true;
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`AdamW ${field} = ${String(value)}: ${rule}`);
  }
}

/** The paper's rule: weight decay on weight matrices (and conv kernels) only; none on gains, biases,
 *  embeddings and unembeddings. */
export function decaysByDefault(kind: ParamKind): boolean {
  return kind === 'matrix';
}

function checkConfig(cfg: AdamWConfig): void {
  const unit = (f: keyof AdamWConfig, closedTop: boolean) => {
    const v = cfg[f];
    if (!(Number.isFinite(v) && v >= 0 && (closedTop ? v <= 1 : v < 1))) {
      throw new AdamWConfigError(f, v, closedTop ? 'must be in [0, 1]' : 'must be in [0, 1)');
    }
  };
  unit('beta1', false);
  unit('beta2', false);
  unit('emaDecay', true);
  if (!(Number.isFinite(cfg.eps) && cfg.eps > 0)) throw new AdamWConfigError('eps', cfg.eps, 'must be > 0');
  if (!(Number.isFinite(cfg.weightDecay) && cfg.weightDecay >= 0)) {
    throw new AdamWConfigError('weightDecay', cfg.weightDecay, 'must be ≥ 0');
  }
}

export class AdamW {
  readonly params: readonly AdamWParam[];
  readonly theta: tf.Variable;
  private readonly offsets: number[];
  private readonly total: number;
  private readonly m: tf.Variable;
  private readonly v: tf.Variable;
  private readonly ema: tf.Variable;
  /** 1 where a parameter decays, 0 where not (absent when none does). */
  private readonly decayMask?: tf.Tensor1D;
  private t = 0;

  /** `theta` [Σ size] holds the parameters back to back in `params` order. */
  constructor(
    theta: tf.Variable,
    params: AdamWParam[],
    readonly cfg: AdamWConfig,
  ) {
    checkConfig(cfg);
    const names = new Set<string>();
    for (const p of params) {
      if (names.has(p.name)) throw new AdamWConfigError('params', p.name, 'parameter names must be unique');
      if (!(Number.isInteger(p.size) && p.size > 0))
        throw new AdamWConfigError(`params[${p.name}].size`, p.size, 'must be a positive integer');
      names.add(p.name);
    }
    this.params = params.map((p) => ({ ...p }));
    let at = 0;
    this.offsets = params.map((p) => ((at += p.size), at - p.size));
    this.total = at;
    if (theta.dtype !== 'float32' || theta.rank !== 1 || theta.size !== this.total)
      throw new AdamWConfigError(
        'theta',
        `${theta.dtype} [${theta.shape}]`,
        `must be a float32 vector of ${this.total} values (the parameters' sizes added up)`,
      );
    this.theta = theta;
    const uid = uidCounter++;
    this.m = ownedVariable(tf.zerosLike(theta), `adamw${uid}.m`);
    this.v = ownedVariable(tf.zerosLike(theta), `adamw${uid}.v`);
    this.ema = ownedVariable(theta.clone(), `adamw${uid}.ema`);
    if (params.some((p) => p.decay)) {
      const mask = new Float32Array(this.total);
      params.forEach((p, i) => p.decay && mask.fill(1, this.offsets[i]!, this.offsets[i]! + p.size));
      this.decayMask = tf.tensor1d(mask, 'float32');
    }
  }

  /** Updates applied so far (the t of bias correction). */
  get updates(): number {
    return this.t;
  }

  /** Applies one update with learning rate `lr`; `grads` in `params` order (one per parameter, or a
   *  single flat array or tensor of all of them). */
  apply(
    grads: ReadonlyArray<Float32Array | tf.Tensor>,
    lr: number,
    opts: AdamWStepOptions = {},
  ): AdamWStepResult {
    if (!(Number.isFinite(lr) && lr >= 0))
      throw new AdamWConfigError('lr', lr, 'must be a finite number ≥ 0');
    if (opts.maxGradNorm !== undefined && !(opts.maxGradNorm > 0)) {
      throw new AdamWConfigError('maxGradNorm', opts.maxGradNorm, 'must be > 0');
    }
    const flat = this.flatten(grads);
    const gradNorm = globalNorm([flat]);
    if (!Number.isFinite(gradNorm)) {
      if (flat instanceof tf.Tensor && !grads.includes(flat)) flat.dispose();
      return { gradNorm, clipped: false, skipped: true, updates: this.t };
    }
    const clipped = opts.maxGradNorm !== undefined && gradNorm > opts.maxGradNorm;
    const scale = clipped ? opts.maxGradNorm! / gradNorm : 1;

    this.t += 1;
    const { beta1, beta2, eps, weightDecay, emaDecay } = this.cfg;
    // Bias corrections in float64, folded into one step size as in Kingma & Ba §2 ("efficiency").
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    tf.tidy(() => {
      let g: tf.Tensor = flat instanceof tf.Tensor ? flat : tf.tensor1d(flat, 'float32');
      if (clipped) g = g.mul(tf.scalar(scale));
      const m = this.m.mul(tf.scalar(beta1)).add(g.mul(tf.scalar(1 - beta1)));
      const v = this.v.mul(tf.scalar(beta2)).add(g.square().mul(tf.scalar(1 - beta2)));
      this.m.assign(m);
      this.v.assign(v);
      // √(v/bc2) + ε = √v/√bc2 + ε
      const denom = v
        .sqrt()
        .mul(tf.scalar(1 / Math.sqrt(bc2)))
        .add(tf.scalar(eps));
      let next: tf.Tensor = this.theta;
      if (this.decayMask && weightDecay > 0) {
        // Per element exactly (1 − lr·wd) where decay is on and exactly 1 elsewhere: d − 1 and
        // (d − 1) + 1 are exact in float32 for d ≥ ½, so the product matches a per-parameter update.
        const d = Math.fround(1 - lr * weightDecay);
        next = next.mul(this.decayMask.mul(tf.scalar(d - 1)).add(tf.scalar(1)));
      }
      next = next.sub(m.div(denom).mul(tf.scalar(lr / bc1)));
      this.theta.assign(next);
      this.ema.assign(this.ema.mul(tf.scalar(emaDecay)).add(next.mul(tf.scalar(1 - emaDecay))));
    });
    if (flat instanceof tf.Tensor && !grads.includes(flat)) flat.dispose();
    return { gradNorm, clipped, skipped: false, updates: this.t };
  }

  /** The EMA of each parameter, in `params` order (what the sampler and encodeDataset use). */
  emaArrays(): Float32Array[] {
    return this.split(this.ema);
  }

  /** Moments and EMA as named arrays (`<name>.m`, `<name>.v`, `<name>.ema`) for a checkpoint; pair with `updates`. */
  stateArrays(): [string, Float32Array][] {
    const [m, v, ema] = [this.split(this.m), this.split(this.v), this.split(this.ema)];
    return this.params.flatMap((p, i) => [
      [`${p.name}.m`, m[i]!],
      [`${p.name}.v`, v[i]!],
      [`${p.name}.ema`, ema[i]!],
    ]) as [string, Float32Array][];
  }

  /** Names and lengths `loadStateArrays` expects. */
  stateLayout(): [string, number][] {
    return this.params.flatMap((p) => [
      [`${p.name}.m`, p.size],
      [`${p.name}.v`, p.size],
      [`${p.name}.ema`, p.size],
    ]) as [string, number][];
  }

  /** Restores moments, EMA and the update count saved by `stateArrays` / `updates`. */
  loadStateArrays(arrays: Map<string, Float32Array>, updates: number): void {
    if (!(Number.isInteger(updates) && updates >= 0))
      throw new AdamWConfigError('updates', updates, 'must be an integer ≥ 0');
    const problems: string[] = [];
    for (const [name, n] of this.stateLayout()) {
      const a = arrays.get(name);
      if (!a) problems.push(`missing optimizer array "${name}"`);
      else if (a.length !== n)
        problems.push(`optimizer array "${name}" has ${a.length} values, expected ${n}`);
    }
    if (problems.length > 0) throw new GradientShapeError(problems);
    for (const [which, target] of [
      ['m', this.m],
      ['v', this.v],
      ['ema', this.ema],
    ] as const) {
      const flat = new Float32Array(this.total);
      this.params.forEach((p, i) => flat.set(arrays.get(`${p.name}.${which}`)!, this.offsets[i]!));
      tf.tidy(() => target.assign(tf.tensor1d(flat, 'float32')));
    }
    this.t = updates;
  }

  /** Sets the EMA to the current parameters (e.g. after loading weights from elsewhere). */
  resetEma(): void {
    this.ema.assign(this.theta);
  }

  /** Releases the optimizer's tensors (not the parameters). */
  dispose(): void {
    tf.dispose([this.m, this.v, this.ema, ...(this.decayMask ? [this.decayMask] : [])]);
  }

  /** One flat download of a [total] variable, cut into per-parameter copies. */
  private split(x: tf.Tensor): Float32Array[] {
    const all = (x.dataSync() as Float32Array).slice();
    return this.params.map((p, i) => all.subarray(this.offsets[i]!, this.offsets[i]! + p.size));
  }

  /** The gradients as one [total] array or tensor (zero-copy when they already are one, or consecutive
   *  views of one buffer); a new tensor here is disposed by the caller. */
  private flatten(grads: ReadonlyArray<Float32Array | tf.Tensor>): Float32Array | tf.Tensor {
    const one = grads.length === 1 && this.params.length !== 1 ? grads[0]! : undefined;
    if (one !== undefined) {
      const n = one instanceof tf.Tensor ? one.size : one.length;
      if (n !== this.total)
        throw new GradientShapeError([`a flat gradient of ${n} values for ${this.total} parameter values`]);
      return one instanceof tf.Tensor ? one.reshape([this.total]) : one;
    }
    this.checkGrads(grads);
    if (grads.every((g) => g instanceof Float32Array)) {
      const arrays = grads as Float32Array[];
      const first = arrays[0]!;
      const contiguous = arrays.every(
        (g, i) => g.buffer === first.buffer && g.byteOffset === first.byteOffset + 4 * this.offsets[i]!,
      );
      if (contiguous) return new Float32Array(first.buffer, first.byteOffset, this.total);
      const out = new Float32Array(this.total);
      arrays.forEach((g, i) => out.set(g, this.offsets[i]!));
      return out;
    }
    return tf.tidy(() =>
      tf.concat(grads.map((g) => (g instanceof tf.Tensor ? g.reshape([-1]) : tf.tensor1d(g, 'float32')))),
    );
  }

  private checkGrads(grads: ReadonlyArray<Float32Array | tf.Tensor>): void {
    const problems: string[] = [];
    if (grads.length !== this.params.length) {
      problems.push(`${grads.length} gradients for ${this.params.length} parameters`);
    } else {
      this.params.forEach((p, i) => {
        const g = grads[i]!;
        const n = g instanceof tf.Tensor ? g.size : g.length;
        if (!(g instanceof tf.Tensor) && !(g instanceof Float32Array))
          problems.push(`gradient of ${p.name} is neither a Float32Array nor a tensor`);
        else if (n !== p.size)
          problems.push(`gradient of ${p.name} has ${n} values, parameter has ${p.size}`);
      });
    }
    if (problems.length > 0) throw new GradientShapeError(problems);
  }
}

/** Global L2 norm over a list of gradients, accumulated in float64 in a fixed order (deterministic). */
export function globalNorm(grads: ReadonlyArray<Float32Array | tf.Tensor>): number {
  let sum = 0;
  for (const g of grads) {
    if (g instanceof tf.Tensor) {
      const s = tf.tidy(() => tf.sum(tf.square(g.toFloat())));
      sum += s.dataSync()[0]!;
      s.dispose();
    } else {
      for (let i = 0; i < g.length; i++) sum += g[i]! * g[i]!;
    }
  }
  return Math.sqrt(sum);
}

let uidCounter = 0;
/** A non-trainable variable that owns `init` (tf.variable adds a reference, so the temporary is dropped).
 *  Variable names are unique per engine: two optimizers over same-named params must not clash. */
function ownedVariable(init: tf.Tensor, name: string): tf.Variable {
  const v = tf.variable(init, false, `${name}_${uidCounter++}`);
  init.dispose();
  return v;
}
