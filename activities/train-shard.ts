// Rank r of W for one segment: load the committed checkpoint, join the NATS group, run steps
// (compute → PowerSGD all-reduce → apply), heartbeat every step, and store a checkpoint every
// `checkpointEvery` steps: each rank its PowerSGD state, rank 0 the model state, then rank 0 commits
// once every rank has stored its part (a barrier). Cancellation stops at a step boundary.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import type { NatsConnection } from 'nats';
import { joinGroup, PowerSgd, type Group } from '../collective/index.ts';
import { initTfBackend, type Trainer } from '../model/index.ts';
import { CURVES_PART, RunCurves, SAMPLES_PART, type CheckpointStore, type PartRef } from '../store/index.ts';
import { recordTrainStep } from '../telemetry/index.ts';
import { stageBatches, type StageBatchSource } from './batches.ts';
import { renderCheckpointSamples } from './checkpoint-samples.ts';
import { createStageTrainer } from './stage-trainer.ts';
import {
  progressSignal,
  stageSteps,
  type ProgressReport,
  type TrainShardInput,
  type TrainShardResult,
} from '../contract/index.ts';

export interface TrainShardDeps {
  nc: NatsConnection;
  checkpoints: CheckpointStore;
  /** Signals rank 0's progress to the run's workflow. */
  client: Client;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** Progress signals land in the root workflow's history: every 2 s keeps a long run's history (and a
 *  replay after a worker dies) small. */
const PROGRESS_EVERY_MS = 2000;

/** Fault injection for failure tests: `DALLE_TEST_SIGKILL_AT=<stage>:<step>` makes this worker process
 *  SIGKILL itself when one of its ranks reaches that step, mid-segment, exactly as a dying machine would. */
const sigkillAt = process.env.DALLE_TEST_SIGKILL_AT;

/** The barrier of a checkpoint doubles as an all-gather of every rank's part reference: rank r writes its
 *  sha256 (as 16-bit words, exact in float32) and byte count into its slot, the others write zeros, and the
 *  sum is every rank's reference on every rank. */
async function gatherPartRefs(
  group: Group,
  step: number,
  rank: number,
  worldSize: number,
  ref: PartRef,
): Promise<PartRef[]> {
  const SLOT = 16 + 2;
  const v = new Float32Array(worldSize * SLOT);
  for (let i = 0; i < 16; i++) v[rank * SLOT + i] = parseInt(ref.sha256.slice(i * 4, i * 4 + 4), 16);
  v[rank * SLOT + 16] = Math.floor(ref.bytes / 0x10000);
  v[rank * SLOT + 17] = ref.bytes % 0x10000;
  const sum = await group.allReduce(v, step, 'ckpt');
  return Array.from({ length: worldSize }, (_, r) => ({
    name: `rank${r}`,
    sha256: Array.from({ length: 16 }, (_, i) => sum[r * SLOT + i]!.toString(16).padStart(4, '0')).join(''),
    bytes: sum[r * SLOT + 16]! * 0x10000 + sum[r * SLOT + 17]!,
  }));
}

/** Rank 0's curves and sample grid of a checkpoint: parts and manifest facts. The grid's drawing time goes
 *  into the curves (`sampleSeconds` at the checkpoint's step). A grid that fails to draw is logged and left
 *  out; it never costs the checkpoint. */
async function rank0Extras(
  deps: TrainShardDeps,
  input: TrainShardInput,
  step: number,
  trainer: Trainer<unknown>,
  curves: RunCurves,
): Promise<{ parts: PartRef[]; meta: Record<string, unknown> }> {
  const { runId, stage, spec } = input;
  const grid = await renderCheckpointSamples({
    runId,
    stage,
    spec,
    trainer,
    checkpoints: deps.checkpoints,
  }).catch((e: unknown) => void deps.log(`no sample grid for ${runId}/${stage}/${step}: ${String(e)}`));
  if (grid) curves.annotate(step, 'sampleSeconds', grid.meta.ms / 1000);
  const parts = [await deps.checkpoints.putPart(runId, stage, step, CURVES_PART, curves.encode())];
  if (!grid) return { parts, meta: {} };
  parts.push(await deps.checkpoints.putPart(runId, stage, step, SAMPLES_PART, grid.png));
  return { parts, meta: { samples: grid.meta } };
}

/** Stores this step's checkpoint; rank 0 commits once every rank's part is stored (the gather above is
 *  the barrier: no rank's reference exists before its part does). */
async function saveCheckpoint(
  deps: TrainShardDeps,
  input: TrainShardInput,
  step: number,
  trainer: Trainer<unknown>,
  psgd: PowerSgd,
  group: Group,
  loss: number,
  backend: string,
  curves: RunCurves | undefined,
): Promise<void> {
  const { runId, stage, rank, worldSize } = input;
  const mine = await deps.checkpoints.putPart(runId, stage, step, `rank${rank}`, psgd.saveState());
  const params =
    rank === 0
      ? await deps.checkpoints.putPart(runId, stage, step, 'params', trainer.saveState())
      : undefined;
  const extras = curves ? await rank0Extras(deps, input, step, trainer, curves) : undefined;
  const ranks = await gatherPartRefs(group, step, rank, worldSize, mine);
  if (params)
    await deps.checkpoints.commit(
      {
        runId,
        stage,
        step,
        parts: [params, ...ranks, ...(extras?.parts ?? [])],
        meta: { worldSize, loss, groupId: input.groupId, backend, ...extras?.meta },
      },
      input.spec.train.keepCheckpoints,
    );
}

export async function trainShard(deps: TrainShardDeps, input: TrainShardInput): Promise<TrainShardResult> {
  const ctx = Context.current();
  const { runId, stage, spec, rank, worldSize, fromStep, toStep } = input;
  const total = stageSteps(spec, stage);
  if (spec.train.batchSize % worldSize !== 0) {
    throw ApplicationFailure.nonRetryable(
      `train.batchSize ${spec.train.batchSize} is not divisible by worldSize ${worldSize}`,
      'ConfigError',
    );
  }

  // 1. State: model + optimizer from the committed checkpoint (or the seed), this rank's PowerSGD state.
  const backend = await initTfBackend();
  const trainer = await createStageTrainer(stage, spec, worldSize);
  const source: StageBatchSource = await stageBatches(stage, spec, deps.checkpoints, runId);
  const psgd = new PowerSgd(trainer.paramSpecs(), spec.powersgd, { rank, worldSize, seed: spec.train.seed });
  let checkpointStep = 0;
  // Rank 0 keeps the stage's curves; a resumed segment continues those of its checkpoint.
  let curves = rank === 0 ? new RunCurves() : undefined;
  if (fromStep > 0) {
    const manifest = await deps.checkpoints.manifestAt(runId, stage, fromStep);
    if (!manifest) throw new Error(`committed checkpoint ${runId}/${stage}/${fromStep} has no manifest`);
    trainer.loadState(await deps.checkpoints.loadPart(manifest, 'params'));
    if (curves && manifest.parts.some((p) => p.name === CURVES_PART))
      curves = await deps.checkpoints
        .loadPart(manifest, CURVES_PART)
        .then((b) => RunCurves.decode(b, fromStep))
        .catch((e: unknown) => {
          deps.log(`curves of ${runId}/${stage}/${fromStep} unreadable, starting them afresh: ${String(e)}`);
          return new RunCurves();
        });
    // A rank that did not exist at save time (world size grew) starts with empty error buffers.
    if (manifest.parts.some((p) => p.name === `rank${rank}`) && manifest.meta.worldSize === worldSize) {
      psgd.loadState(await deps.checkpoints.loadPart(manifest, `rank${rank}`));
    }
    checkpointStep = fromStep;
    if (manifest.meta.backend !== undefined && manifest.meta.backend !== backend) {
      deps.log(
        `resuming a checkpoint written on the ${String(manifest.meta.backend)} backend on ${backend}: training continues correctly, but not bit-identically to a run that stayed on one backend`,
      );
    }
  }

  // 2. The group: a barrier that every rank of this segment launch passes, or PeerLostError. A
  // cancellation ends any wait at once: joining is raced against it, and closing the group makes a pending
  // collective operation reject, so a cancelled rank frees its worker slot promptly.
  const joining = joinGroup({
    nc: deps.nc,
    runId,
    groupId: input.groupId,
    rank,
    worldSize,
    timeoutMs: spec.train.collectiveTimeout * 1000,
    joinTimeoutMs: spec.train.joinTimeout * 1000,
  });
  let group: Group;
  try {
    group = await Promise.race([joining, ctx.cancelled]);
  } catch (e) {
    void joining.then(
      (g) => g.close(),
      () => undefined,
    );
    trainer.dispose();
    throw e;
  }
  const onAbort = () => void group.close().catch(() => undefined);
  ctx.cancellationSignal.addEventListener('abort', onAbort);
  const progressHandle = rank === 0 ? deps.client.workflow.getHandle(input.progressWorkflowId) : undefined;
  let lastProgress = 0;
  let loss = NaN;
  let bytesRaw = 0;
  let bytesSent = 0;
  let skippedSteps = 0;
  let stepMs = 0;
  let exposedCommMs = 0;
  const t0 = Date.now();
  // Heartbeats also flow while a step blocks (a slow peer), so only a dead process times out.
  let lastDetails = { step: fromStep, checkpointStep };
  const beat = setInterval(
    () => ctx.heartbeat(lastDetails),
    Math.max(500, (spec.train.heartbeatTimeout * 1000) / 4),
  );
  try {
    for (let step = fromStep; step < toStep; step++) {
      if (ctx.cancellationSignal.aborted) break;
      // 3. One step: compute → compress + all-reduce → apply.
      if (sigkillAt === `${stage}:${step}`) process.kill(process.pid, 'SIGKILL');
      const stepStart = performance.now();
      const batch = await source.batch(step, rank, worldSize);
      // The share of exposed communication is over the training step proper (data loading excluded).
      const computeStart = performance.now();
      const g = trainer.computeGradients(batch, step, rank);
      // The loss rides along in the gradients' first all-reduce (no round of its own).
      const r = await psgd.reduce(group, g.grads, step, Float32Array.of(g.loss));
      const globalLoss = r.extras[0]! / worldSize;
      let metrics = g.metrics;
      if (r.skipped) skippedSteps++;
      else metrics = { ...metrics, ...trainer.applyGradients(r.grads, step, globalLoss) };
      stepMs += performance.now() - computeStart;
      exposedCommMs += r.stats.exposedCommMs;
      loss = globalLoss;
      bytesRaw += r.stats.bytesRaw;
      bytesSent += r.stats.bytesSent;

      const done = step + 1;
      curves?.record(done, {
        ...metrics,
        loss,
        seconds: (performance.now() - stepStart) / 1000,
        bytesRaw: r.stats.bytesRaw,
        bytesSent: r.stats.bytesSent,
      });
      if (done % spec.train.checkpointEvery === 0 || done === toStep) {
        await saveCheckpoint(deps, input, done, trainer, psgd, group, loss, backend, curves);
        checkpointStep = done;
      }
      lastDetails = { step: done, checkpointStep };
      ctx.heartbeat(lastDetails);
      // Loss, steps/s, compression rate gauges (global figures: one rank reports them).
      if (rank === 0)
        recordTrainStep({
          runId,
          stage,
          loss,
          stepsPerSec: (done - fromStep) / ((Date.now() - t0) / 1000),
          bytesRaw: r.stats.bytesRaw,
          bytesSent: r.stats.bytesSent,
        });

      const now = Date.now();
      if (progressHandle && (now - lastProgress >= PROGRESS_EVERY_MS || done === toStep)) {
        lastProgress = now;
        const report: ProgressReport = {
          stage,
          step: done,
          totalSteps: total,
          loss,
          lr: metrics.lr ?? NaN,
          tau: metrics.tau,
          beta: metrics.beta,
          stepsPerSec: (done - fromStep) / ((now - t0) / 1000),
          worldSize,
          bytesRaw,
          bytesSent,
          checkpointStep,
        };
        await progressHandle
          .signal(progressSignal, report)
          .catch((e: unknown) => deps.log('progress signal failed', { error: String(e) }));
      }
    }
  } finally {
    ctx.cancellationSignal.removeEventListener('abort', onAbort);
    clearInterval(beat);
    await group.close().catch(() => undefined);
    trainer.dispose();
  }
  if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? new Error('cancelled');
  const steps = Math.max(1, lastDetails.step - fromStep);
  return {
    rank,
    step: lastDetails.step,
    loss,
    checkpointStep,
    stepsPerSec: steps / ((Date.now() - t0) / 1000),
    bytesRaw,
    bytesSent,
    skippedSteps,
    stepMs,
    exposedCommMs,
  };
}
