// The contract between a model's training math and the distributed runtime. Both stages implement it;
// `activities/train-shard.ts` drives it: compute → (compress + all-reduce) → apply, one step at a time.
// Everything crossing this boundary is plain typed arrays, never tensors, so the collective and the
// checkpoint store need no tfjs.

/** How a parameter is treated by PowerSGD and weight decay (docs/model.md: gains, biases, embeddings and
 *  unembeddings are all-reduced uncompressed in fp32 and get no weight decay in stage 2). */
export type ParamKind = 'matrix' | 'gain' | 'bias' | 'embedding' | 'unembedding';

export interface ParamSpec {
  /** Stable, unique, human-readable (`encoder.group0.block1.conv2.w`). */
  name: string;
  /** Row-major shape; a conv kernel is [kh, kw, in, out] (the collective views it as [kh·kw·in, out]). */
  shape: number[];
  kind: ParamKind;
}

/** Per-step figures for logs, progress queries and metrics. */
export type StepMetrics = Record<string, number>;

export interface GradientResult {
  /** Mean loss over the local batch. */
  loss: number;
  /** One gradient per parameter, in `paramSpecs()` order: of the local-batch mean loss (the runtime
   *  weights each rank's by its share of the global batch before averaging over ranks). */
  grads: Float32Array[];
  /** e.g. { recon, kl, tau, beta, lr } for the dVAE; { textLoss, imageLoss, lr } for the transformer. */
  metrics: StepMetrics;
}

/** Options of a trainer. */
export interface TrainerOptions {
  /** false: allocate no optimizer state (moments, EMA). The parameters are then updated from outside, by a
   *  rank's shard of a sharded AdamW (`updateRule` + `setParams`), and the state a trainer saves and loads
   *  is parameters and schedules only. Default true. */
  optimizer?: boolean;
  /** The dVAE's probe for codebook splitting (dvae.codeSplitEvery): training images uint8 [n, R, R, 3],
   *  the same on every rank. */
  probe?: Uint8Array;
}

/** What one AdamW update applies, for an optimizer outside the trainer (model/sharded-adamw.ts). */
export interface UpdateRule {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  emaDecay: number;
  /** Decoupled weight decay on each parameter, in `paramSpecs()` order. */
  decay: boolean[];
  /** Global gradient-norm clip, if the stage clips. */
  maxGradNorm?: number;
}

/** Rewrites a recipe makes after some updates (the dVAE's dead-code restarts and code splits), for an optimizer outside
 *  the trainer: the trainer decides, the optimizer's holder gathers the arrays and writes them back. */
export interface OutsideRewrites {
  /** The parameter (`paramSpecs()` index) whose averaged gradient the trainer watches, row by row of its
   *  [prod(shape[:-1]), shape[-1]] view. */
  watch: number;
  /** After update `step` was applied: each row's Σg² of the watched gradient (averaged over ranks, before
   *  clipping). Returns the rewrite due now, if any. The same rows give the same answer on every rank. */
  observe(step: number, rowSq: ArrayLike<number>): OutsideRewrite | undefined;
}

export interface OutsideRewrite {
  /** The parameters (`paramSpecs()` indices) rewritten, whole. */
  params: number[];
  /** Rewrites them in place: `values` their full arrays (in `params` order); `followers` one list per
   *  optimizer array that follows the parameters (moments, EMA), each in `params` order. */
  apply(values: Float32Array[], followers: Float32Array[][]): void;
  /** For the step's metrics (`codeRestarts`). */
  count: number;
}

/** applyGradients / exportParams('ema') on a trainer built without its optimizer. */
export class NoOptimizerError extends Error {
  override name = 'NoOptimizerError';
  readonly fatal = true;
  constructor(readonly call: string) {
    super(`${call} needs the trainer's optimizer, and this trainer was built with { optimizer: false }`);
  }
}

/** One stage's trainable model plus its optimizer. Deterministic: the same state, batch and step give
 *  bit-identical results, and all randomness (Gumbel noise, dropout) is a pure function of
 *  (seed, step, the sample's index in the global batch), so a resumed run needs no RNG stream state beyond
 *  the step, and a run whose world size changes draws the same numbers. */
export interface Trainer<Batch> {
  readonly stage: 'dvae' | 'transformer' | 'rerank';
  /** Parameters in a fixed order; the order of `grads` and of saved state. */
  paramSpecs(): ParamSpec[];
  /** Phases 1–2: schedules at `step`, forward, backward on this rank's local batch. `gathered` is what
   *  every rank's `exchange` returned for this step, in rank order (only for trainers that have one). */
  computeGradients(batch: Batch, step: number, rank: number, gathered?: Float32Array[]): GradientResult;
  /** Only for a loss that couples samples of different ranks (the reranker's contrastive loss, whose
   *  negatives are the whole global batch): this rank's contribution, computed before its gradients. The
   *  runtime all-gathers the contributions (equal lengths on every rank) and passes them to
   *  `computeGradients`. */
  exchange?(batch: Batch, step: number, rank: number): Float32Array;
  /** Phase 4: apply gradients averaged over ranks (clipping, AdamW, EMA happen here). `loss` is the
   *  global mean loss of the step (for plateau schedules). */
  applyGradients(grads: Float32Array[], step: number, loss: number): StepMetrics;
  /** For an optimizer outside the trainer: advances the schedules' state exactly as applyGradients does
   *  (the plateau rule observes `loss`) and says what AdamW applies at `step`. */
  updateRule(step: number, loss: number): UpdateRule;
  /** Built without its optimizer, a trainer whose recipe rewrites parameters and optimizer state after
   *  some updates says how here (applyGradients does it itself otherwise). */
  readonly outsideRewrites?: OutsideRewrites;
  /** Overwrites the parameters (`paramSpecs()` order), e.g. with the all-gathered result of a sharded
   *  update; `updates` is the optimizer's update count so far (saved with the state). */
  setParams(params: Float32Array[], updates: number): void;
  /** Everything for an exact resume: params, optimizer moments, EMA, schedule state (without the
   *  optimizer: params and schedule state). */
  saveState(): Uint8Array;
  loadState(bytes: Uint8Array): void;
  /** Current parameters (or their EMA) as typed arrays in `paramSpecs()` order, e.g. for publishing. */
  exportParams(which: 'params' | 'ema'): Float32Array[];
  /** Releases every tensor. */
  dispose(): void;
}
