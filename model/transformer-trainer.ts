// Stage 2's Trainer (model/trainer.ts): the transformer, AdamW and the warm-up + plateau lr schedule.
// One step, as the runtime drives it:
//   1. computeGradients: lr from the schedule state; forward + backward on this rank's batch; grads of
//      the local mean loss come back as Float32Arrays (their mean over equal-sized ranks is the
//      gradient of the global-batch mean loss).
//   2. (runtime) PowerSGD / all-reduce of the grads.
//   3. applyGradients: the plateau rule observes the global loss; clip the averaged, decompressed
//      gradients to global norm gradClip (docs/model.md: 4, so it must be here, after decompression); AdamW
//      (β 0.9/0.96, ε 1e-8, wd 4.5e-2 on matrices and unembeddings, none on gains, biases, embeddings);
//      EMA 0.99.
// The transformer has no dropout, so a step is a function of (state, batch) alone; rank is accepted
// for the contract and checked. Deterministic on one backend: same state + batch + step ⇒ same bits.
import * as tf from '@tensorflow/tfjs';
import type { DvaeConfig, TransformerConfig } from '../config/index.ts';
import { AdamW, adamwConfigOf, adamwOverTheta } from './adamw.ts';
import { initialPlateauState, lrAt, observeLoss, type PlateauState } from './lr-plateau.ts';
import { ParamVector } from './param-vector.ts';
import { decodeState, encodeState, expectArrays, StateMismatchError } from './state-io.ts';
import { initTransformerParams, Transformer, transformerParamSpecs } from './transformer.ts';
import {
  NoOptimizerError,
  type GradientResult,
  type ParamKind,
  type ParamSpec,
  type StepMetrics,
  type Trainer,
  type TrainerOptions,
  type UpdateRule,
} from './trainer.ts';

export interface TransformerBatch {
  /** [n, textLen] BPE ids, 0 = padding. */
  text: Int32Array;
  /** [n, grid²] dVAE tokens (argmax of the encoder logits). */
  image: Int32Array;
  n: number;
}

/** A batch whose arrays do not match n, textLen, grid² or the vocabularies. */
export class TransformerBatchError extends Error {
  override name = 'TransformerBatchError';
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`transformer batch ${field}: ${reason}`);
  }
}

/** Arguments of a trainer call out of range (rank, step, seed, worldSize). */
export class TransformerTrainerArgumentError extends Error {
  override name = 'TransformerTrainerArgumentError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`transformer trainer ${field} = ${String(value)}: ${rule}`);
  }
}

/** Weight decay per the paper's stage 2: none on gains, biases, embeddings; on everything else. */
export function transformerDecays(kind: ParamKind): boolean {
  return kind === 'matrix' || kind === 'unembedding';
}

interface SavedMeta {
  stage: 'transformer';
  version: 1;
  updates: number;
  /** `best` is null when not finite (JSON has no Infinity). */
  plateau: { smoothed: number | null; best: number | null; bestStep: number; halvings: number };
  specs: string[];
}

const PARAM_PREFIX = 'param:';
const OPT_PREFIX = 'opt:';
let trainerUid = 0;

export function createTransformerTrainer(
  cfg: TransformerConfig,
  dvae: DvaeConfig,
  seed: number,
  worldSize: number,
  opts: TrainerOptions = {},
): Trainer<TransformerBatch> {
  return new TransformerTrainer(cfg, dvae, seed, worldSize, opts);
}

class TransformerTrainer implements Trainer<TransformerBatch> {
  readonly stage = 'transformer' as const;
  private readonly specs: ParamSpec[];
  private readonly params: ParamVector;
  private readonly model: Transformer;
  /** Absent when built with { optimizer: false }: a sharded optimizer outside updates the parameters. */
  private readonly opt?: AdamW;
  private outsideUpdates = 0;
  private plateau: PlateauState = initialPlateauState();

  constructor(
    private readonly cfg: TransformerConfig,
    private readonly dvae: DvaeConfig,
    seed: number,
    private readonly worldSize: number,
    opts: TrainerOptions = {},
  ) {
    if (!(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32))
      throw new TransformerTrainerArgumentError('seed', seed, 'must be a uint32');
    if (!(Number.isInteger(worldSize) && worldSize >= 1))
      throw new TransformerTrainerArgumentError('worldSize', worldSize, 'must be a positive integer');
    this.specs = transformerParamSpecs(cfg, dvae);
    const init = initTransformerParams(cfg, dvae, seed);
    this.params = new ParamVector(this.specs, init, `transformer-trainer${trainerUid++}/theta`);
    this.model = new Transformer(cfg, dvae, undefined);
    if (opts.optimizer === false) return;
    this.opt = adamwOverTheta(this.params.theta, this.specs, this.params.sizes, this.cfg, transformerDecays);
  }

  paramSpecs(): ParamSpec[] {
    return this.specs.map((s) => ({ ...s, shape: [...s.shape] }));
  }

  private checkBatch(b: TransformerBatch): void {
    if (typeof b !== 'object' || b === null) throw new TransformerBatchError('batch', 'must be an object');
    const D = this.model.dims;
    if (!(Number.isInteger(b.n) && b.n >= 1))
      throw new TransformerBatchError('n', `must be a positive integer, got ${b.n}`);
    if (!(b.text instanceof Int32Array) || b.text.length !== b.n * D.textLen) {
      throw new TransformerBatchError(
        'text',
        `must be an Int32Array of n·textLen = ${b.n * D.textLen} ids, got ${b.text?.length}`,
      );
    }
    if (!(b.image instanceof Int32Array) || b.image.length !== b.n * D.imageLen) {
      throw new TransformerBatchError(
        'image',
        `must be an Int32Array of n·grid² = ${b.n * D.imageLen} ids, got ${b.image?.length}`,
      );
    }
    for (let i = 0; i < b.text.length; i++) {
      if (b.text[i]! < 0 || b.text[i]! >= D.textVocab)
        throw new TransformerBatchError('text', `id ${b.text[i]} at ${i} is outside [0, ${D.textVocab})`);
    }
    for (let i = 0; i < b.image.length; i++) {
      if (b.image[i]! < 0 || b.image[i]! >= D.imageVocab)
        throw new TransformerBatchError('image', `id ${b.image[i]} at ${i} is outside [0, ${D.imageVocab})`);
    }
  }

  private checkStep(step: number): void {
    if (!(Number.isInteger(step) && step >= 0))
      throw new TransformerTrainerArgumentError('step', step, 'must be a non-negative integer');
  }

  computeGradients(batch: TransformerBatch, step: number, rank: number): GradientResult {
    // 1. schedule
    this.checkStep(step);
    if (!(Number.isInteger(rank) && rank >= 0 && rank < this.worldSize)) {
      throw new TransformerTrainerArgumentError('rank', rank, `must be an integer in [0, ${this.worldSize})`);
    }
    this.checkBatch(batch);
    const lr = lrAt(this.cfg, this.plateau, step);
    // 2. forward + backward
    const D = this.model.dims;
    const text = tf.tensor2d(batch.text, [batch.n, D.textLen], 'int32');
    const image = tf.tensor2d(batch.image, [batch.n, D.imageLen], 'int32');
    let textLoss = 0;
    let imageLoss = 0;
    const { value, grads } = tf.variableGrads(() => {
      this.model.bind(this.params.tensors());
      const l = this.model.losses(text, image);
      this.model.bind(undefined);
      textLoss = l.textLoss.dataSync()[0]!;
      imageLoss = l.imageLoss.dataSync()[0]!;
      return l.loss;
    }, [this.params.theta]);
    const loss = value.dataSync()[0]!;
    // One download of the flat gradient; per-parameter views of it.
    const out = this.params.views((grads[this.params.theta.name]!.dataSync() as Float32Array).slice());
    tf.dispose([text, image, value, ...Object.values(grads)]);
    return { loss, grads: out, metrics: { textLoss, imageLoss, lr } };
  }

  applyGradients(grads: Float32Array[], step: number, loss: number): StepMetrics {
    this.checkStep(step);
    if (!this.opt) throw new NoOptimizerError('transformer applyGradients');
    this.plateau = observeLoss(this.cfg, this.plateau, step, loss);
    const lr = lrAt(this.cfg, this.plateau, step);
    const r = this.opt.apply(grads, lr, { maxGradNorm: this.cfg.gradClip });
    return {
      lr,
      gradNorm: r.gradNorm,
      clipped: r.clipped ? 1 : 0,
      skipped: r.skipped ? 1 : 0,
      updates: r.updates,
      lrHalvings: this.plateau.halvings,
      smoothedLoss: this.plateau.smoothed ?? Number.NaN,
    };
  }

  updateRule(step: number, loss: number): UpdateRule {
    this.checkStep(step);
    this.plateau = observeLoss(this.cfg, this.plateau, step, loss);
    return {
      lr: lrAt(this.cfg, this.plateau, step),
      ...adamwConfigOf(this.cfg),
      decay: this.specs.map((s) => transformerDecays(s.kind)),
      maxGradNorm: this.cfg.gradClip,
    };
  }

  setParams(params: Float32Array[], updates: number): void {
    this.params.assign(params);
    this.outsideUpdates = updates;
  }

  saveState(): Uint8Array {
    const p = this.plateau;
    const meta: SavedMeta = {
      stage: 'transformer',
      version: 1,
      updates: this.opt?.updates ?? this.outsideUpdates,
      plateau: {
        smoothed: p.smoothed,
        best: Number.isFinite(p.best) ? p.best : null,
        bestStep: p.bestStep,
        halvings: p.halvings,
      },
      specs: this.specs.map((s) => `${s.name}:${s.shape.join('x')}:${s.kind}`),
    };
    const arrays: [string, Float32Array][] = this.params
      .arrays()
      .map((a, i) => [`${PARAM_PREFIX}${this.specs[i]!.name}`, a]);
    for (const [name, a] of this.opt?.stateArrays() ?? []) arrays.push([`${OPT_PREFIX}${name}`, a]);
    return encodeState(meta as unknown as Record<string, unknown>, arrays);
  }

  loadState(bytes: Uint8Array): void {
    // A Node Buffer's slice() is a view, not a copy, and state-io's decodeState then reads its floats from
    // the wrong offset (checksum still passing). Hand it a plain Uint8Array copy.
    const plain = Buffer.isBuffer(bytes) ? new Uint8Array(bytes) : bytes;
    const { meta, arrays } = decodeState<SavedMeta>(plain);
    if (meta?.stage !== 'transformer')
      throw new StateMismatchError([`state is for stage ${String(meta?.stage)}, not transformer`]);
    const expected: [string, number][] = [
      ...this.specs.map((s, i) => [`${PARAM_PREFIX}${s.name}`, this.params.sizes[i]!] as [string, number]),
      ...(this.opt?.stateLayout() ?? []).map(([n, len]) => [`${OPT_PREFIX}${n}`, len] as [string, number]),
    ];
    expectArrays(arrays, expected);
    const opt = new Map<string, Float32Array>();
    for (const [name, a] of arrays)
      if (name.startsWith(OPT_PREFIX)) opt.set(name.slice(OPT_PREFIX.length), a);
    this.opt?.loadStateArrays(opt, meta.updates);
    this.outsideUpdates = meta.updates;
    this.params.assign(this.specs.map((s) => arrays.get(`${PARAM_PREFIX}${s.name}`)!));
    const p = meta.plateau;
    this.plateau = {
      smoothed: p.smoothed,
      best: p.best ?? Number.POSITIVE_INFINITY,
      bestStep: p.bestStep,
      halvings: p.halvings,
    };
  }

  exportParams(which: 'params' | 'ema'): Float32Array[] {
    if (which === 'params') return this.params.arrays();
    if (!this.opt) throw new NoOptimizerError("transformer exportParams('ema')");
    return this.opt.emaArrays();
  }

  dispose(): void {
    this.model.dispose();
    this.opt?.dispose();
    this.params.dispose();
  }
}
