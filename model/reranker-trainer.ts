// Stage 3's Trainer (model/trainer.ts): the reranker (./reranker.ts), AdamW and a warm-up + cosine lr.
// One step, as the runtime drives it:
//   1. computeGradients: lr at `step`; forward + backward of the contrastive loss on this rank's pairs.
//   2. (runtime) PowerSGD / all-reduce of the grads.
//   3. applyGradients: AdamW (weight decay on matrices only), EMA.
// The negatives of a pair are every other pair of the global batch: before step 1 the runtime all-gathers
// each rank's pair embeddings (`exchange`, slices of any length: activities/rank-gradients.ts), so the mean
// of the ranks' gradients is the whole batch's, whatever the world size. Built with { optimizer: false }
// (the sharded layout) it leaves step 3 to a rank's shard of AdamW (`updateRule`, `setParams`).
// No randomness: a step is a function of (state, batch).
import * as tf from '@tensorflow/tfjs';
import type { DvaeConfig, RerankConfig, TransformerConfig } from '../config/index.ts';
import { AdamW, adamwConfigOf, adamwOverTheta, decaysByDefault } from './adamw.ts';
import {
  checkRerankerInputs,
  initRerankerParams,
  Reranker,
  rerankerDims,
  rerankerParamSpecs,
  type RerankerDims,
} from './reranker.ts';
import { ParamVector } from './param-vector.ts';
import { cosineAnneal } from './schedules.ts';
import { decodeState, encodeState, expectArrays, StateMismatchError } from './state-io.ts';
import {
  NoOptimizerError,
  type GradientResult,
  type ParamSpec,
  type StepMetrics,
  type Trainer,
  type TrainerOptions,
  type UpdateRule,
} from './trainer.ts';

export interface RerankBatch {
  /** [n, R, R, 3] uint8 RGB (the transformer's preprocessing: centred crop, no flip). */
  images: Uint8Array;
  /** [n, textLen] BPE ids of each image's caption, 0 = padding. */
  text: Int32Array;
  n: number;
}

/** Arguments of a trainer call out of range (rank, step, seed, worldSize, a batch too small to contrast). */
export class RerankTrainerArgumentError extends Error {
  override name = 'RerankTrainerArgumentError';
  readonly fatal = true;
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`rerank trainer ${field} = ${String(value)}: ${rule}`);
  }
}

/** Learning rate of update `step`: lr·(step+1)/warmupSteps during warm-up, then cosine to lrEnd at `steps`. */
export function rerankLrAt(
  cfg: Pick<RerankConfig, 'lr' | 'lrEnd' | 'warmupSteps' | 'steps'>,
  step: number,
): number {
  if (step < cfg.warmupSteps) return (cfg.lr * (step + 1)) / cfg.warmupSteps;
  return cosineAnneal(step - cfg.warmupSteps, cfg.lr, cfg.lrEnd, Math.max(1, cfg.steps - cfg.warmupSteps));
}

function concat(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

interface SavedMeta {
  stage: 'rerank';
  version: 1;
  updates: number;
  specs: string[];
}

const PARAM_PREFIX = 'param:';
const OPT_PREFIX = 'opt:';
let trainerUid = 0;

export function createRerankTrainer(
  cfg: RerankConfig,
  transformer: Pick<TransformerConfig, 'textLen' | 'vocabSize'>,
  dvae: Pick<DvaeConfig, 'resolution'>,
  seed: number,
  worldSize: number,
  opts: TrainerOptions = {},
): Trainer<RerankBatch> {
  return new RerankTrainer(cfg, rerankerDims(cfg, transformer, dvae), seed, worldSize, opts);
}

class RerankTrainer implements Trainer<RerankBatch> {
  readonly stage = 'rerank' as const;
  private readonly specs: ParamSpec[];
  /** Every parameter back to back in one variable θ (what AdamW updates). */
  private readonly params: ParamVector;
  /** Absent when built with { optimizer: false }: a sharded optimizer outside updates the parameters. */
  private readonly opt?: AdamW;
  private outsideUpdates = 0;

  constructor(
    private readonly cfg: RerankConfig,
    private readonly dims: RerankerDims,
    seed: number,
    private readonly worldSize: number,
    opts: TrainerOptions = {},
  ) {
    if (!(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32))
      throw new RerankTrainerArgumentError('seed', seed, 'must be a uint32');
    if (!(Number.isInteger(worldSize) && worldSize >= 1))
      throw new RerankTrainerArgumentError('worldSize', worldSize, 'must be a positive integer');
    const init = initRerankerParams(cfg, dims, seed);
    const uid = trainerUid++;
    this.specs = rerankerParamSpecs(dims);
    this.params = new ParamVector(this.specs, init, `rerank${uid}/theta`);
    if (opts.optimizer === false) return;
    this.opt = adamwOverTheta(this.params.theta, this.specs, this.params.sizes, this.cfg);
  }

  /** The model over θ's current values; its tensors are views computed from θ (under a tape, their
   *  gradients land on θ), disposed by the caller's tidy. */
  private model(): Reranker {
    return new Reranker(this.cfg, this.dims, this.params.tensors());
  }

  paramSpecs(): ParamSpec[] {
    return this.specs.map((s) => ({ ...s, shape: [...s.shape] }));
  }

  private checkStep(step: number): void {
    if (!(Number.isInteger(step) && step >= 0))
      throw new RerankTrainerArgumentError('step', step, 'must be a non-negative integer');
  }

  private checkArgs(batch: RerankBatch, step: number, rank: number): void {
    this.checkStep(step);
    if (!(Number.isInteger(rank) && rank >= 0 && rank < this.worldSize))
      throw new RerankTrainerArgumentError('rank', rank, `must be an integer in [0, ${this.worldSize})`);
    if (!(Number.isInteger(batch?.n) && batch.n >= 1))
      throw new RerankTrainerArgumentError('batch.n', batch?.n, 'must be a positive integer');
    checkRerankerInputs(this.dims, batch.text, batch.images, batch.n);
  }

  private tensors(batch: RerankBatch): [tf.Tensor4D, tf.Tensor2D] {
    const { resolution: R, textLen: L } = this.dims;
    return [
      tf.tensor4d(batch.images, [batch.n, R, R, 3], 'int32'),
      tf.tensor2d(batch.text, [batch.n, L], 'int32'),
    ];
  }

  /** This rank's pairs embedded, [n, 2E] flattened: the negatives every other rank contrasts against. */
  exchange(batch: RerankBatch, step: number, rank: number): Float32Array {
    this.checkArgs(batch, step, rank);
    const [images, text] = this.tensors(batch);
    const out = tf.tidy(() => (this.model().embedPairs(images, text).dataSync() as Float32Array).slice());
    tf.dispose([images, text]);
    return out;
  }

  computeGradients(
    batch: RerankBatch,
    step: number,
    rank: number,
    gathered?: Float32Array[],
  ): GradientResult {
    // 1. schedule
    this.checkArgs(batch, step, rank);
    const width = 2 * this.dims.embedDim;
    const total = gathered ? gathered.reduce((a, g) => a + g.length, 0) / width : batch.n;
    if (total < 2)
      throw new RerankTrainerArgumentError(
        'batch',
        total,
        'must hold ≥ 2 pairs: a pair is told apart from the others',
      );
    if (gathered && gathered[rank]?.length !== batch.n * width)
      throw new RerankTrainerArgumentError(
        'gathered',
        gathered[rank]?.length,
        `rank ${rank}'s part must be n·2E = ${batch.n * width} values`,
      );
    const lr = rerankLrAt(this.cfg, step);
    // 2. forward + backward: the global batch's loss, with this rank's pairs embedded under the tape. Each
    // rank's gradient is that of W·loss through its own embeddings, so their mean is the loss's gradient.
    const [images, text] = this.tensors(batch);
    const pairs = gathered ? tf.tensor2d(concat(gathered), [total, width]) : undefined;
    const offset = gathered ? gathered.slice(0, rank).reduce((a, g) => a + g.length, 0) / width : 0;
    let logits: Float32Array = new Float32Array(0);
    let scale = NaN;
    let loss = NaN;
    const { value, grads } = tf.variableGrads(() => {
      const l = this.model().losses(images, text, pairs && { pairs, offset, ranks: gathered!.length });
      logits = l.logits.dataSync() as Float32Array;
      scale = l.scale.dataSync()[0]!;
      loss = l.loss.dataSync()[0]!;
      return l.loss.mul(gathered ? gathered.length : 1) as tf.Scalar;
    }, [this.params.theta]);
    // One download of the flat gradient; per-parameter views of it.
    const flat = grads[this.params.theta.name];
    const out = this.params.views(
      flat ? (flat.dataSync() as Float32Array).slice() : new Float32Array(this.params.total),
    );
    tf.dispose([images, text, value, ...(pairs ? [pairs] : []), ...Object.values(grads)]);
    // Retrieval within the global batch: the share of images whose own caption scores highest.
    let hits = 0;
    for (let i = 0; i < total; i++) {
      const row = logits.subarray(i * total, (i + 1) * total);
      if (row.every((v, j) => j === i || v < row[i]!)) hits++;
    }
    return { loss, grads: out, metrics: { lr, accuracy: hits / total, logitScale: scale } };
  }

  applyGradients(grads: Float32Array[], step: number, _loss: number): StepMetrics {
    this.checkStep(step);
    if (!this.opt) throw new NoOptimizerError('rerank applyGradients');
    const lr = rerankLrAt(this.cfg, step);
    const r = this.opt.apply(grads, lr);
    return { lr, gradNorm: r.gradNorm, skipped: r.skipped ? 1 : 0, updates: r.updates };
  }

  updateRule(step: number, _loss: number): UpdateRule {
    this.checkStep(step);
    return {
      lr: rerankLrAt(this.cfg, step),
      ...adamwConfigOf(this.cfg),
      decay: this.specs.map((s) => decaysByDefault(s.kind)),
    };
  }

  setParams(params: Float32Array[], updates: number): void {
    this.params.assign(params);
    this.outsideUpdates = updates;
  }

  saveState(): Uint8Array {
    const meta: SavedMeta = {
      stage: 'rerank',
      version: 1,
      updates: this.opt?.updates ?? this.outsideUpdates,
      specs: this.specs.map((s) => `${s.name}:${s.shape.join('x')}:${s.kind}`),
    };
    const arrays: [string, Float32Array][] = this.params
      .arrays()
      .map((a, i) => [`${PARAM_PREFIX}${this.specs[i]!.name}`, a]);
    for (const [name, a] of this.opt?.stateArrays() ?? []) arrays.push([`${OPT_PREFIX}${name}`, a]);
    return encodeState(meta as unknown as Record<string, unknown>, arrays);
  }

  loadState(bytes: Uint8Array): void {
    // A Node Buffer's slice() is a view: decodeState needs a plain Uint8Array (see transformer-trainer.ts).
    const plain = Buffer.isBuffer(bytes) ? new Uint8Array(bytes) : bytes;
    const { meta, arrays } = decodeState<SavedMeta>(plain);
    if (meta?.stage !== 'rerank')
      throw new StateMismatchError([`state is for stage ${String(meta?.stage)}, not rerank`]);
    expectArrays(arrays, [
      ...this.specs.map((s, i) => [`${PARAM_PREFIX}${s.name}`, this.params.sizes[i]!] as [string, number]),
      ...(this.opt?.stateLayout() ?? []).map(([n, len]) => [`${OPT_PREFIX}${n}`, len] as [string, number]),
    ]);
    const opt = new Map<string, Float32Array>();
    for (const [name, a] of arrays)
      if (name.startsWith(OPT_PREFIX)) opt.set(name.slice(OPT_PREFIX.length), a);
    this.opt?.loadStateArrays(opt, meta.updates);
    this.outsideUpdates = meta.updates;
    this.params.assign(this.specs.map((s) => arrays.get(`${PARAM_PREFIX}${s.name}`)!));
  }

  exportParams(which: 'params' | 'ema'): Float32Array[] {
    if (which === 'params') return this.params.arrays();
    if (!this.opt) throw new NoOptimizerError("rerank exportParams('ema')");
    return this.opt.emaArrays();
  }

  dispose(): void {
    this.opt?.dispose();
    this.params.dispose();
  }
}
