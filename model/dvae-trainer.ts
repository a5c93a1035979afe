// The dVAE behind the Trainer contract (trainer.ts): typed arrays in and out, one visible step in
// numbered phases, and all randomness (Gumbel noise) a pure function of (seed, step, sample index).
//   1. τ, β, lr from the schedules at `step`
//   2. forward + backward on this rank's batch → gradients of the local-batch mean loss
//   3. (outside: the runtime compresses and all-reduces them)
//   4. AdamW with decoupled weight decay, then the parameter EMA
// Gradients are of the local-batch mean loss; the runtime weights each rank's by its share of the global
// batch (activities/rank-gradients.ts), so the mean over ranks is the gradient of the global-batch mean.
import * as tf from '@tensorflow/tfjs';
import type { DvaeConfig } from '../config/index.ts';
import { AdamW, adamwConfigOf, adamwOverTheta, decaysByDefault } from './adamw.ts';
import { applyRestarts, codebookOf, CodeUsage, restartedParams } from './code-restart.ts';
import { applySplits, cellPixels, planSplits, type CodeSplit } from './code-split.ts';
import {
  dvaeLayout,
  dvaeLossTerms,
  dvaeParamSpecs,
  DvaeInputError,
  encoderFeatures,
  initDvaeParams,
  type DvaeLayout,
} from './dvae.ts';
import { gumbelNoise } from './gumbel.ts';
import { ParamVector } from './param-vector.ts';
import { betaAt, lrAt, tauAt } from './schedules.ts';
import { decodeState, encodeState, expectArrays } from './state-io.ts';
import {
  NoOptimizerError,
  type GradientResult,
  type OutsideRewrites,
  type ParamSpec,
  type StepMetrics,
  type Trainer,
  type TrainerOptions,
  type UpdateRule,
} from './trainer.ts';

export interface DvaeBatch {
  /** [n, res, res, 3] uint8 RGB, already preprocessed. */
  images: Uint8Array;
  n: number;
  /** Index of the first sample in the step's global batch: keys each sample's Gumbel noise, so a sample
   *  draws the same noise whichever rank or micro-batch computes it (default rank · n, the start of an
   *  equal rank slice). */
  first?: number;
}

/** A step, rank or batch argument outside the contract. */
export class DvaeStepError extends Error {
  override name = 'DvaeStepError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`dvae trainer ${field} = ${String(value)}: ${rule}`);
  }
}

/** A saved state that belongs to another stage or another architecture. */
export class DvaeStateError extends Error {
  override name = 'DvaeStateError';
  constructor(readonly problems: string[]) {
    super(`dvae state does not fit this trainer:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
  }
}

/** Config fields that fix the parameter shapes: a state loads only into the same values. */
const architectureFields = [
  'resolution',
  'grid',
  'codebookSize',
  'hidden',
  'groups',
  'blocksPerGroup',
  'upsample',
  'downsample',
  'fullResolutionBlocks',
  'quantizer',
] as const;
/** What a state written before a field existed used. */
const legacyArchitecture: Partial<Record<(typeof architectureFields)[number], string | boolean>> = {
  upsample: 'nearest',
  downsample: 'maxpool',
  fullResolutionBlocks: true,
  quantizer: 'gumbel',
};
const STATE_FORMAT = 1;

interface DvaeStateMeta {
  stage: 'dvae';
  format: number;
  seed: number;
  updates: number;
  config: DvaeConfig;
}

/** A rewrite of the codebook (dead-code restarts or code splits) due after an update: how many codes it
 *  rewrites, and how, on arrays named as the parameters (`restartedParams`) with their followers. */
interface CodeRewrite {
  count: number;
  apply(values: ReadonlyMap<string, Float32Array>, followers: ReadonlyMap<string, Float32Array>[]): void;
}

let trainers = 0;

class DvaeTrainer implements Trainer<DvaeBatch> {
  readonly stage = 'dvae' as const;
  private readonly params: ParamVector;
  private readonly layout: DvaeLayout;
  /** Absent when built with { optimizer: false }: a sharded optimizer outside updates the parameters. */
  private readonly opt?: AdamW;
  private readonly specs: ParamSpec[];
  /** Present when dead-code restarts are on. */
  private readonly usage?: CodeUsage;
  /** Present when codebook splitting is on: the probe's images and each of its cells' pixels. */
  private readonly probe?: { images: Uint8Array; pixels: Float32Array };
  /** The update count when the optimizer is outside (setParams). */
  private outsideUpdates = 0;

  constructor(
    readonly cfg: DvaeConfig,
    readonly seed: number,
    readonly worldSize: number,
    opts: TrainerOptions = {},
  ) {
    if (!(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32))
      throw new DvaeStepError('seed', seed, 'must be an integer in [0, 2^32)');
    if (!(Number.isInteger(worldSize) && worldSize >= 1))
      throw new DvaeStepError('worldSize', worldSize, 'must be a positive integer');
    this.layout = dvaeLayout(cfg);
    this.specs = dvaeParamSpecs(cfg);
    this.params = new ParamVector(this.specs, initDvaeParams(cfg, seed), `dvae-trainer${trainers++}/theta`);
    if ((cfg.codeRestartEvery ?? 0) > 0) this.usage = new CodeUsage(cfg.codebookSize);
    if ((cfg.codeSplitEvery ?? 0) > 0) {
      const per = cfg.resolution * cfg.resolution * 3;
      const images = opts.probe;
      if (!(images instanceof Uint8Array) || images.length === 0 || images.length % per !== 0)
        throw new DvaeStepError(
          'probe',
          images?.length,
          `dvae.codeSplitEvery needs a probe of training images, uint8 [n, ${cfg.resolution}, ${cfg.resolution}, 3]`,
        );
      this.probe = { images, pixels: cellPixels(images, cfg.resolution, cfg.grid) };
    }
    // Without the optimizer, dead-code restarts (which rewrite its moments and EMA too) are made by whoever
    // holds them, through `outsideRewrites`.
    if (opts.optimizer === false) return;
    this.opt = adamwOverTheta(this.params.theta, this.specs, this.params.sizes, this.cfg);
  }

  private get updates(): number {
    return this.opt?.updates ?? this.outsideUpdates;
  }

  paramSpecs(): ParamSpec[] {
    return this.specs.map((s) => ({ ...s, shape: [...s.shape] }));
  }

  computeGradients(batch: DvaeBatch, step: number, rank: number): GradientResult {
    this.checkStep(step);
    if (!(Number.isInteger(rank) && rank >= 0 && rank < this.worldSize)) {
      throw new DvaeStepError('rank', rank, `must be an integer in [0, ${this.worldSize})`);
    }
    const { resolution: R, grid: g, codebookSize: K } = this.cfg;
    const n = batch?.n;
    if (!(Number.isInteger(n) && n >= 1)) throw new DvaeStepError('batch.n', n, 'must be a positive integer');
    if (batch.first !== undefined && !(Number.isInteger(batch.first) && batch.first >= 0))
      throw new DvaeStepError('batch.first', batch.first, 'must be an integer ≥ 0');
    if (!(batch.images instanceof Uint8Array) || batch.images.length !== n * R * R * 3) {
      throw new DvaeInputError(
        'batch.images',
        `expected uint8 [${n}, ${R}, ${R}, 3] = ${n * R * R * 3} bytes, got ${batch.images?.length ?? typeof batch.images}`,
      );
    }
    // 1. Schedules.
    const tau = tauAt(step, this.cfg);
    const beta = betaAt(step, this.cfg);
    const lr = lrAt(step, this.cfg);
    // 2. Forward and backward. Metric tensors are kept past the gradient tape's scope, then read.
    let extra: tf.Tensor[] = [];
    const { value, grads } = tf.tidy(() => {
      const x255 = tf.tensor4d(batch.images, [n, R, R, 3], 'int32').toFloat();
      const noise = gumbelNoise(this.seed, step, batch.first ?? rank * n, [n, g, g, K]); // [n, g, g, K]
      return tf.variableGrads(() => {
        const p = this.params.tensors();
        const t = dvaeLossTerms(this.cfg, this.layout, p, x255 as tf.Tensor4D, noise, tau, beta);
        extra = [t.recon, t.kl, t.mse, t.codes].map((e) => tf.keep(e));
        return t.loss;
      }, [this.params.theta]);
    });
    // One download of the flat gradient; per-parameter views of it.
    const gradArrays = this.params.views((grads[this.params.theta.name]!.dataSync() as Float32Array).slice());
    const loss = value.dataSync()[0]!;
    const [recon, kl, mse] = extra.slice(0, 3).map((e) => e.dataSync()[0]!);
    const usage = new Set(extra[3]!.dataSync()).size / K;
    tf.dispose([value, ...Object.values(grads), ...extra]);
    return {
      loss,
      grads: gradArrays,
      metrics: { loss, recon: recon!, kl: kl!, mse: mse!, usage, tau, beta, lr },
    };
  }

  applyGradients(grads: Float32Array[], step: number, _loss: number): StepMetrics {
    this.checkStep(step);
    if (!this.opt) throw new NoOptimizerError('dvae applyGradients');
    const lr = lrAt(step, this.cfg);
    const clip = this.cfg.gradClip ?? 0;
    // Splits are planned on the parameters this step's forward used, as a sharded optimizer's holder does.
    const split = this.splitDue(step);
    const r = this.opt.apply(grads, lr, clip > 0 ? { maxGradNorm: clip } : {});
    let rewrite: CodeRewrite | undefined;
    if (!r.skipped) {
      this.usage?.observe(grads[this.index('decoder.input.w')]!);
      rewrite = this.usage ? this.restartDue(step) : split;
    }
    if (rewrite) this.rewrite(rewrite);
    return {
      lr,
      gradNorm: r.gradNorm,
      skipped: r.skipped ? 1 : 0,
      updates: r.updates,
      ...(this.usage || this.probe ? { codeRestarts: rewrite?.count ?? 0 } : {}),
    };
  }

  private index(name: string): number {
    return this.specs.findIndex((s) => s.name === name);
  }

  /** The dead-code restarts due after update `step` (none between windows and after codeRestartUntil). */
  private restartDue(step: number): CodeRewrite | undefined {
    const every = this.cfg.codeRestartEvery;
    if (!this.usage || (step + 1) % every !== 0 || step >= this.cfg.codeRestartUntil) return undefined;
    const plan = this.usage.plan(every);
    const { quantizer, codebookSize } = this.cfg;
    const jitter = { seed: this.seed, step, jitter: 0.1 };
    return plan.length === 0
      ? undefined
      : {
          count: plan.length,
          apply: (values, followers) =>
            applyRestarts(quantizer, codebookSize, plan, values, followers, jitter),
        };
  }

  /** The code splits due after update `step` (model/code-split.ts), planned on the current parameters. Never
   *  in the stage's last `every` updates: a split reassigns cells near the split codes at once, and the
   *  weights a run publishes must have had time to settle after it. */
  private splitDue(step: number): CodeRewrite | undefined {
    const every = this.cfg.codeSplitEvery ?? 0;
    const until = Math.min(this.cfg.codeSplitUntil ?? every * 4, this.cfg.steps - every);
    if (!this.probe || (step + 1) % every !== 0 || step >= until) return undefined;
    const t = this.params.tensors();
    let splits: CodeSplit[];
    try {
      const { codes, features } = encoderFeatures(this.cfg, this.layout, t, this.probe.images);
      const probe = { codes, features, pixels: this.probe.pixels, codebookSize: this.cfg.codebookSize };
      splits = planSplits(probe, this.cfg.codeSplitCodes ?? 4);
    } finally {
      tf.dispose(t);
    }
    return splits.length === 0
      ? undefined
      : {
          count: splits.length,
          apply: (values, followers) => applySplits(codebookOf(values), followers.map(codebookOf), splits),
        };
  }

  /** Applies a rewrite to the codebook's parameters and to their Adam moments and EMA. */
  private rewrite(rw: CodeRewrite): void {
    if (!this.opt) throw new NoOptimizerError('dvae code rewrites');
    const params = this.params.arrays();
    const state = new Map(this.opt.stateArrays());
    const names = restartedParams(this.cfg.quantizer);
    const values = new Map(names.map((n) => [n, params[this.index(n)]!]));
    const followers = ['m', 'v', 'ema'].map((w) => new Map(names.map((n) => [n, state.get(`${n}.${w}`)!])));
    rw.apply(values, followers);
    this.params.assign(params);
    this.opt.loadStateArrays(state, this.opt.updates);
  }

  /** Code rewrites for a sharded optimizer, applied to the arrays the host's ranks gather. Dead-code
   *  restarts: the usage is observed from the rows' Σg² the ranks sum between them. Code splits: planned on
   *  the parameters of the step's forward (which every rank holds whole until the all-gather). */
  get outsideRewrites(): OutsideRewrites | undefined {
    if (this.opt || !(this.usage || this.probe)) return undefined;
    const names = restartedParams(this.cfg.quantizer);
    const byName = (arrays: Float32Array[]) => new Map(names.map((n, i) => [n, arrays[i]!]));
    return {
      watch: this.index('decoder.input.w'),
      observe: (step, rowSq) => {
        this.usage?.observeRows(rowSq);
        const rw = this.usage ? this.restartDue(step) : this.splitDue(step);
        if (!rw) return undefined;
        return {
          params: names.map((n) => this.index(n)),
          count: rw.count,
          apply: (values, followers) => rw.apply(byName(values), followers.map(byName)),
        };
      },
    };
  }

  updateRule(step: number, _loss: number): UpdateRule {
    this.checkStep(step);
    return {
      lr: lrAt(step, this.cfg),
      ...adamwConfigOf(this.cfg),
      decay: this.specs.map((s) => decaysByDefault(s.kind)),
    };
  }

  setParams(params: Float32Array[], updates: number): void {
    this.params.assign(params);
    this.outsideUpdates = updates;
  }

  saveState(): Uint8Array {
    const meta: DvaeStateMeta = {
      stage: 'dvae',
      format: STATE_FORMAT,
      seed: this.seed,
      updates: this.updates,
      config: this.cfg,
    };
    const params = this.params.arrays().map((a, i) => [`param.${this.specs[i]!.name}`, a] as const);
    const opt = (this.opt?.stateArrays() ?? []).map(([name, a]) => [`opt.${name}`, a] as const);
    const usage = this.usage
      ? ([
          ['codes.idle', Float32Array.from(this.usage.idle)],
          ['codes.load', this.usage.load.slice()],
        ] as const)
      : [];
    return encodeState(meta as unknown as Record<string, unknown>, [...params, ...opt, ...usage]);
  }

  loadState(bytes: Uint8Array): void {
    const { meta, arrays } = decodeState<Partial<DvaeStateMeta>>(bytes);
    const problems: string[] = [];
    if (meta?.stage !== 'dvae') problems.push(`state is of stage "${String(meta?.stage)}", not "dvae"`);
    if (meta?.format !== STATE_FORMAT)
      problems.push(`state format ${String(meta?.format)}, this code reads ${STATE_FORMAT}`);
    for (const f of architectureFields) {
      // States written before these fields existed used the paper's architecture and Gumbel codes.
      const saved = meta?.config?.[f] ?? legacyArchitecture[f];
      if (saved !== this.cfg[f])
        problems.push(`config.${f} is ${String(saved)} in the state, ${this.cfg[f]} here`);
    }
    if (!(Number.isInteger(meta?.updates) && meta!.updates! >= 0))
      problems.push(`updates = ${String(meta?.updates)} is not a count`);
    if (problems.length > 0) throw new DvaeStateError(problems);
    const sizes = this.specs.map((s) => [s.name, s.shape.reduce((a, b) => a * b, 1)] as const);
    const K = this.cfg.codebookSize;
    expectArrays(arrays, [
      ...sizes.map(([name, n]) => [`param.${name}`, n] as const),
      ...(this.opt?.stateLayout() ?? []).map(([name, n]) => [`opt.${name}`, n] as const),
      ...(this.usage
        ? ([
            ['codes.idle', K],
            ['codes.load', K],
          ] as const)
        : []),
    ]);
    if (this.usage) {
      this.usage.idle.set(arrays.get('codes.idle')!);
      this.usage.load.set(arrays.get('codes.load')!);
    }
    this.params.assign(this.specs.map((s) => arrays.get(`param.${s.name}`)!));
    this.outsideUpdates = meta.updates!;
    if (!this.opt) return;
    const optArrays = new Map<string, Float32Array>();
    for (const [name, a] of arrays) if (name.startsWith('opt.')) optArrays.set(name.slice(4), a);
    this.opt.loadStateArrays(optArrays, meta.updates!);
  }

  exportParams(which: 'params' | 'ema'): Float32Array[] {
    if (which === 'params') return this.params.arrays();
    if (!this.opt) throw new NoOptimizerError("dvae exportParams('ema')");
    return this.opt.emaArrays();
  }

  dispose(): void {
    this.opt?.dispose();
    this.params.dispose();
  }

  private checkStep(step: number): void {
    if (!(Number.isInteger(step) && step >= 0 && step < 2 ** 32))
      throw new DvaeStepError('step', step, 'must be an integer in [0, 2^32)');
  }
}

/** The dVAE trainer for one rank of `worldSize`; parameters start from a pure function of `seed`. */
export function createDvaeTrainer(
  cfg: DvaeConfig,
  seed: number,
  worldSize: number,
  opts: TrainerOptions = {},
): Trainer<DvaeBatch> {
  return new DvaeTrainer(cfg, seed, worldSize, opts);
}
