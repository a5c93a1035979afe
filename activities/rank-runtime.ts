// How a rank turns its gradient into an update, and what it stores at a checkpoint: the contract between
// the segment loop (train-shard.ts) and the two layouts.
//   flat (here): every rank holds the whole model and optimizer; PowerSGD all-reduces everything over the
//     world; the trainer's own AdamW applies it; rank 0 stores the model and optimizer, each rank its
//     PowerSGD state.
//   host (sharded-runtime.ts): the paper's parameter sharding within a host, PowerSGD between hosts.
import type { Group, PowerSgd } from '../collective/index.ts';
import type { StepMetrics, Trainer } from '../model/index.ts';
import type { CheckpointStore, PartRef } from '../store/index.ts';
import type { TrainShardInput } from '../contract/index.ts';

export interface StepOutcome {
  /** PowerSGD skipped the step on every rank (a non-finite value somewhere): nothing was applied. */
  skipped: boolean;
  metrics: StepMetrics;
  /** Gradient bytes this rank would have all-reduced uncompressed, and what it all-reduced (PowerSGD). */
  bytesRaw: number;
  bytesSent: number;
  /** Payload bytes this rank published to, and used from, the other ranks of its host during the step
   *  (the group's counters; 0 in the flat layout). */
  hostBytes: { sent: number; received: number };
  /** The step's global mean loss (the ranks' losses ride along in the gradients' all-reduce). */
  loss: number;
  /** Wall ms this rank waited for PowerSGD's collectives (communication the step did not hide). */
  exposedCommMs: number;
}

/** State a rank holds, in bytes, by kind (what parameter sharding divides). */
export interface RankMemory {
  /** The full parameters the forward pass reads. */
  params: number;
  /** The full gradient the backward pass produces. */
  grads: number;
  /** AdamW: moments, EMA (and, sharded, this rank's master copy of its pieces). */
  optimizer: number;
  /** PowerSGD: error buffers and warm-start Q. */
  powersgd: number;
}

export interface RankRuntime {
  /** Reduces this rank's (weighted) gradient and its `localLoss` over the world and applies the update
   *  (schedules that watch the loss see the global one, returned as `loss`). */
  step(grads: Float32Array[], step: number, localLoss: number): Promise<StepOutcome>;
  /** The full EMA parameters on rank 0 (what its quality probe and sample grid read), undefined on the
   *  other ranks. Collective in the sharded layout (host 0's ranks gather their pieces): every rank calls it
   *  at the same checkpoints. */
  gatherEma(step: number): Promise<Float32Array[] | undefined>;
  /** Stores this rank's checkpoint parts, in the order of `partNames(rank)`; rank 0 also stores the
   *  model state and returns it as `params`. */
  saveParts(step: number): Promise<{ mine: PartRef[]; params?: PartRef }>;
  /** The names of rank r's parts (the same on every rank). */
  partNames(rank: number): string[];
  /** Facts about the layout for the manifest. */
  layoutMeta(): Record<string, unknown>;
  memory(): RankMemory;
  /** Ranks an elastic run adds at a time (a sharded run: its ranks per host). */
  growthUnit(): number;
  /** Leaves the layout's own groups (not the segment's group). */
  close(): Promise<void>;
}

const elements = (trainer: Trainer<unknown>) =>
  trainer.paramSpecs().reduce((n, s) => n + s.shape.reduce((a, b) => a * b, 1), 0);

export class FlatRuntime implements RankRuntime {
  constructor(
    private readonly checkpoints: CheckpointStore,
    private readonly input: TrainShardInput,
    private readonly trainer: Trainer<unknown>,
    private readonly psgd: PowerSgd,
    private readonly group: Group,
  ) {}

  async step(grads: Float32Array[], step: number, localLoss: number): Promise<StepOutcome> {
    const r = await this.psgd.reduce(this.group, grads, step, Float32Array.of(localLoss));
    const loss = r.extras[0]! / this.group.worldSize;
    const metrics = r.skipped ? {} : this.trainer.applyGradients(r.grads, step, loss);
    return {
      skipped: r.skipped,
      metrics,
      bytesRaw: r.stats.bytesRaw,
      bytesSent: r.stats.bytesSent,
      hostBytes: { sent: 0, received: 0 },
      loss,
      exposedCommMs: r.stats.exposedCommMs,
    };
  }

  async gatherEma(): Promise<Float32Array[] | undefined> {
    return this.input.rank === 0 ? this.trainer.exportParams('ema') : undefined;
  }

  async saveParts(step: number): Promise<{ mine: PartRef[]; params?: PartRef }> {
    const { runId, stage, rank } = this.input;
    const mine = await this.checkpoints.putPart(runId, stage, step, `rank${rank}`, this.psgd.saveState());
    const params =
      rank === 0
        ? await this.checkpoints.putPart(runId, stage, step, 'params', this.trainer.saveState())
        : undefined;
    return { mine: [mine], params };
  }

  partNames(rank: number): string[] {
    return [`rank${rank}`];
  }

  layoutMeta(): Record<string, unknown> {
    return {};
  }

  memory(): RankMemory {
    const bytes = 4 * elements(this.trainer);
    return { params: bytes, grads: bytes, optimizer: 3 * bytes, powersgd: this.psgd.stateBytes() };
  }

  growthUnit(): number {
    return 1;
  }

  async close(): Promise<void> {}
}
