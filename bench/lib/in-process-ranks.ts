// W ranks of one stage (the transformer, the dVAE, or with a batch source the reranker) in one process,
// each with its own NATS connection to a real server, laid out flat or
// sharded within hosts (the runtimes the workers use: activities/rank-runtime.ts, sharded-runtime.ts),
// stepping on synthetic batches. For `dalle bench sharding` and the sharding tests: the layouts compared
// on the same data, with no Temporal in between.
import { randomBytes } from 'node:crypto';
import { connect, type NatsConnection } from 'nats';
import type { RunSpec } from '../../config/index.ts';
import { joinGroup, PowerSgd, type Group } from '../../collective/index.ts';
import type { Trainer, TransformerBatch } from '../../model/index.ts';
import type { StageBatchSource } from '../../activities/batches.ts';
import { rankGradients } from '../../activities/rank-gradients.ts';
import type { CheckpointStore } from '../../store/index.ts';
import { stagePowerSgd, type TrainShardInput } from '../../contract/index.ts';
import { FlatRuntime, type RankRuntime, type StepOutcome } from '../../activities/rank-runtime.ts';
import { openShardedRuntime } from '../../activities/sharded-runtime.ts';
import { createStageTrainer } from '../../activities/stage-trainer.ts';

export interface InProcessRanks {
  ncs: NatsConnection[];
  groups: Group[];
  trainers: Trainer<any>[];
  runtimes: RankRuntime[];
  inputs: TrainShardInput[];
  /** The stage's batches (the reranker's: its ranks exchange embeddings through `rankGradients`). */
  source?: StageBatchSource;
}

/** A learnable synthetic batch of rank r at `step`: random captions, image tokens a function of them. */
export function syntheticBatch(spec: RunSpec, step: number, rank: number, n = 2): TransformerBatch {
  const { textLen, vocabSize } = spec.transformer;
  const imageLen = spec.dvae.grid ** 2;
  let s = (step * 7919 + rank * 104729 + 1) >>> 0;
  const next = (mod: number) => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), (s >>> 8) % mod);
  const text = Int32Array.from({ length: n * textLen }, () => 1 + next(vocabSize - 1));
  const image = Int32Array.from(
    { length: n * imageLen },
    (_, i) => (text[Math.floor(i / imageLen) * textLen + (i % textLen)]! * 7 + i) % spec.dvae.codebookSize,
  );
  return { text, image, n };
}

/** Opens W ranks (W = hostIds.length, or 4 flat when hostIds is undefined), resuming from checkpoint
 *  `fromStep` of `runId` when given. Transformer ranks step on `syntheticBatch` (other stages on the
 *  caller's `batchOf`); with `source` they are reranker ranks (stage 3) that step on its batches. */
export async function openRanks(o: {
  url: string;
  spec: RunSpec;
  hostIds?: string[];
  worldSize?: number;
  stage?: 'dvae' | 'transformer';
  checkpoints: CheckpointStore;
  runId: string;
  fromStep?: number;
  source?: StageBatchSource;
}): Promise<InProcessRanks> {
  const { spec, checkpoints, runId } = o;
  const W = o.hostIds?.length ?? o.worldSize ?? 4;
  const fromStep = o.fromStep ?? 0;
  const groupId = `g-${randomBytes(4).toString('hex')}`;
  const ncs = await Promise.all(Array.from({ length: W }, () => connect({ servers: o.url })));
  const join = (rank: number) =>
    joinGroup({ nc: ncs[rank]!, runId, groupId, rank, worldSize: W, timeoutMs: 20_000 });
  const groups = await Promise.all(ncs.map((_, r) => join(r)));
  const sharded = o.hostIds !== undefined;
  const stage = o.source ? ('rerank' as const) : (o.stage ?? 'transformer');
  const trainers = await Promise.all(
    groups.map(() => createStageTrainer(stage, spec, W, { optimizer: !sharded })),
  );
  const inputs = groups.map((_, rank) => ({
    runId,
    stage,
    spec,
    rank,
    worldSize: W,
    groupId,
    fromStep,
    toStep: Number.MAX_SAFE_INTEGER,
    progressWorkflowId: 'none',
  }));
  const manifest = fromStep ? await checkpoints.manifestAt(runId, stage, fromStep) : undefined;
  if (manifest) for (const t of trainers) t.loadState(await checkpoints.loadPart(manifest, 'params'));
  const seed = spec.train.seed;
  const runtimes = await Promise.all(
    groups.map((g, r) =>
      sharded
        ? openShardedRuntime(
            { nc: ncs[r]!, checkpoints, hostId: o.hostIds![r]!, log: () => undefined },
            inputs[r]!,
            g,
            trainers[r]!,
            manifest,
          )
        : new FlatRuntime(
            checkpoints,
            inputs[r]!,
            trainers[r]!,
            new PowerSgd(trainers[r]!.paramSpecs(), stagePowerSgd(spec, stage), {
              rank: r,
              worldSize: W,
              seed,
            }),
            g,
          ),
    ),
  );
  return { ncs, groups, trainers, runtimes, inputs, source: o.source };
}

export interface StepRecord {
  loss: number;
  /** Every rank's outcome. */
  ranks: StepOutcome[];
  ms: number;
}

/** Steps [from, to) on every rank at once; `batchOf(step, rank)` defaults to syntheticBatch. */
export async function trainRanks(
  c: InProcessRanks,
  spec: RunSpec,
  from: number,
  to: number,
  batchOf: (step: number, rank: number) => unknown = (step, rank) => syntheticBatch(spec, step, rank),
): Promise<StepRecord[]> {
  const out: StepRecord[] = [];
  for (let step = from; step < to; step++) {
    const t0 = performance.now();
    const ranks = await Promise.all(
      c.groups.map(async (g, r) => {
        const grads = c.source
          ? await rankGradients(c.trainers[r]!, c.source, spec, step, r, c.groups.length, g)
          : c.trainers[r]!.computeGradients(batchOf(step, r), step, r);
        const outcome = await c.runtimes[r]!.step(grads.grads, step, grads.loss);
        return { loss: outcome.loss, outcome };
      }),
    );
    out.push({ loss: ranks[0]!.loss, ranks: ranks.map((x) => x.outcome), ms: performance.now() - t0 });
  }
  return out;
}

export async function closeRanks(c: InProcessRanks): Promise<void> {
  await Promise.all(c.runtimes.map((r) => r.close()));
  await Promise.all(c.groups.map((g) => g.close()));
  await Promise.all(c.ncs.map((nc) => nc.close()));
  for (const t of c.trainers) t.dispose();
}
