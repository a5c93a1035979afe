// AdamW (Loshchilov & Hutter) with decoupled weight decay, a per-parameter decay mask, optional
// global-norm clipping, a skip on non-finite gradients, and a parameter EMA. Shared by both stages.
//
// One update, per parameter p with gradient g (t counts applied updates, from 1):
//   m ← β1·m + (1−β1)·g          v ← β2·v + (1−β2)·g²
//   p ← p − lr·wd·p  (only where decay is on; PyTorch's convention: the decay follows the lr schedule)
//   p ← p − lr · (m / (1−β1^t)) / (√(v / (1−β2^t)) + ε)
//   ema ← d·ema + (1−d)·p
// The update runs in tfjs on the active backend; grads may be tensors or the Float32Arrays that come
// back from the all-reduce.
import * as tf from '@tensorflow/tfjs';
import type { ParamKind } from './trainer.ts';

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

export interface AdamWParam {
  /** Unique name; keys the optimizer state (`<name>.m`, `<name>.v`, `<name>.ema`). */
  name: string;
  variable: tf.Variable;
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
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];
  private readonly ema: tf.Variable[];
  private t = 0;

  constructor(
    params: AdamWParam[],
    readonly cfg: AdamWConfig,
  ) {
    checkConfig(cfg);
    const names = new Set<string>();
    for (const p of params) {
      if (names.has(p.name)) throw new AdamWConfigError('params', p.name, 'parameter names must be unique');
      if (p.variable.dtype !== 'float32')
        throw new AdamWConfigError(`params[${p.name}].dtype`, p.variable.dtype, 'must be float32');
      names.add(p.name);
    }
    this.params = [...params];
    this.m = params.map((p) => ownedVariable(tf.zerosLike(p.variable), `${p.name}.adam_m`));
    this.v = params.map((p) => ownedVariable(tf.zerosLike(p.variable), `${p.name}.adam_v`));
    this.ema = params.map((p) => ownedVariable(p.variable.clone(), `${p.name}.ema`));
  }

  /** Updates applied so far (the t of bias correction). */
  get updates(): number {
    return this.t;
  }

  /** Applies one update with learning rate `lr`; `grads` in `params` order. */
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
    this.checkGrads(grads);
    const gradNorm = globalNorm(grads);
    if (!Number.isFinite(gradNorm)) return { gradNorm, clipped: false, skipped: true, updates: this.t };
    const clipped = opts.maxGradNorm !== undefined && gradNorm > opts.maxGradNorm;
    const scale = clipped ? opts.maxGradNorm! / gradNorm : 1;

    this.t += 1;
    const { beta1, beta2, eps, weightDecay, emaDecay } = this.cfg;
    // Bias corrections in float64, folded into one step size as in Kingma & Ba §2 ("efficiency").
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    tf.tidy(() => {
      const b1 = tf.scalar(beta1);
      const b2 = tf.scalar(beta2);
      const oneMinusB1 = tf.scalar(1 - beta1);
      const oneMinusB2 = tf.scalar(1 - beta2);
      const stepSize = tf.scalar(lr / bc1);
      const epsHat = tf.scalar(eps);
      const invSqrtBc2 = tf.scalar(1 / Math.sqrt(bc2));
      const decayFactor = tf.scalar(1 - lr * weightDecay);
      const emaD = tf.scalar(emaDecay);
      const emaOneMinusD = tf.scalar(1 - emaDecay);
      const gradScale = tf.scalar(scale);
      this.params.forEach((p, i) => {
        const gIn = grads[i]!;
        let g: tf.Tensor =
          gIn instanceof tf.Tensor
            ? gIn.reshape(p.variable.shape)
            : tf.tensor(gIn, p.variable.shape, 'float32');
        if (clipped) g = g.mul(gradScale);
        const m = this.m[i]!.mul(b1).add(g.mul(oneMinusB1));
        const v = this.v[i]!.mul(b2).add(g.square().mul(oneMinusB2));
        this.m[i]!.assign(m);
        this.v[i]!.assign(v);
        // √(v/bc2) + ε = √v/√bc2 + ε
        const denom = v.sqrt().mul(invSqrtBc2).add(epsHat);
        let next: tf.Tensor = p.variable;
        if (p.decay && weightDecay > 0) next = next.mul(decayFactor);
        next = next.sub(m.div(denom).mul(stepSize));
        p.variable.assign(next);
        this.ema[i]!.assign(this.ema[i]!.mul(emaD).add(next.mul(emaOneMinusD)));
      });
    });
    return { gradNorm, clipped, skipped: false, updates: this.t };
  }

  /** The EMA of each parameter, in `params` order (what the sampler and encodeDataset use). */
  emaArrays(): Float32Array[] {
    return this.ema.map((e) => e.dataSync() as Float32Array).map((a) => a.slice());
  }

  /** Moments and EMA as named arrays (`<name>.m`, `<name>.v`, `<name>.ema`) for a checkpoint; pair with `updates`. */
  stateArrays(): [string, Float32Array][] {
    const out: [string, Float32Array][] = [];
    this.params.forEach((p, i) => {
      out.push([`${p.name}.m`, (this.m[i]!.dataSync() as Float32Array).slice()]);
      out.push([`${p.name}.v`, (this.v[i]!.dataSync() as Float32Array).slice()]);
      out.push([`${p.name}.ema`, (this.ema[i]!.dataSync() as Float32Array).slice()]);
    });
    return out;
  }

  /** Names and lengths `loadStateArrays` expects. */
  stateLayout(): [string, number][] {
    return this.params.flatMap((p) => {
      const n = p.variable.size;
      return [
        [`${p.name}.m`, n],
        [`${p.name}.v`, n],
        [`${p.name}.ema`, n],
      ] as [string, number][];
    });
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
    this.params.forEach((p, i) => {
      const shape = p.variable.shape;
      tf.tidy(() => {
        this.m[i]!.assign(tf.tensor(arrays.get(`${p.name}.m`)!, shape, 'float32'));
        this.v[i]!.assign(tf.tensor(arrays.get(`${p.name}.v`)!, shape, 'float32'));
        this.ema[i]!.assign(tf.tensor(arrays.get(`${p.name}.ema`)!, shape, 'float32'));
      });
    });
    this.t = updates;
  }

  /** Sets the EMA to the current parameters (e.g. after loading weights from elsewhere). */
  resetEma(): void {
    this.params.forEach((p, i) => this.ema[i]!.assign(p.variable));
  }

  /** Releases the optimizer's tensors (not the parameters). */
  dispose(): void {
    tf.dispose([...this.m, ...this.v, ...this.ema]);
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
        else if (n !== p.variable.size)
          problems.push(`gradient of ${p.name} has ${n} values, parameter has ${p.variable.size}`);
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
