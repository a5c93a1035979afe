// Rank r of W for one segment: load the committed checkpoint, join the NATS group, run steps
// (compute → PowerSGD all-reduce → apply), heartbeat every step, and store a checkpoint every
// `checkpointEvery` steps (checkpoint-commit.ts). At each checkpoint rank 0 asks whether the world size
// should change (resize.ts); if so every rank stops there and the stage relaunches with the new size from
// that checkpoint. Cancellation stops at a step boundary.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import type { NatsConnection } from 'nats';
import { joinGroup, PeerLostError, PowerSgd, type Group } from '../collective/index.ts';
import { initTfBackend, type Trainer } from '../model/index.ts';
import type { CheckpointManifest, CheckpointStore, RunCurves } from '../store/index.ts';
import { recordTrainStep } from '../telemetry/index.ts';
import { stageBatches, type StageBatchSource } from './batches.ts';
import { saveCheckpoint } from './checkpoint-commit.ts';
import { loadCurves, rank0Extras } from './checkpoint-extras.ts';
import { FlatRuntime, type RankRuntime } from './rank-runtime.ts';
import { openShardedRuntime } from './sharded-runtime.ts';
import { rankGradients } from './rank-gradients.ts';
import { restoreRankState } from './rank-state.ts';
import { resizeDecision } from './resize.ts';
import { createStageTrainer } from './stage-trainer.ts';
import {
  progressSignal,
  stageSteps,
  type JoinShortfall,
  type ProgressReport,
  type TrainShardInput,
  type TrainShardResult,
} from '../contract/index.ts';

export interface TrainShardDeps {
  nc: NatsConnection;
  checkpoints: CheckpointStore;
  /** Signals rank 0's progress to the run's workflow and asks the stage for its world size. */
  client: Client;
  log: (msg: string, fields?: Record<string, unknown>) => void;
  /** The machine this worker is on. */
  hostId: string;
  /** The task queue this worker polls (whose idle slots an elastic run may grow onto). */
  taskQueue: string;
}

/** Progress signals land in the root workflow's history: every 2 s keeps a long run's history (and a
 *  replay after a worker dies) small. */
const PROGRESS_EVERY_MS = 2000;

/** Fault injection for failure tests: `DALLE_TEST_SIGKILL_AT=<stage>:<step>` makes this worker process
 *  SIGKILL itself when one of its ranks reaches that step, mid-segment, exactly as a dying machine would. */
const sigkillAt = process.env.DALLE_TEST_SIGKILL_AT;

/** Joins the segment's group. A cancellation ends the wait at once; peers that never arrive become a
 *  failure whose details (JoinShortfall) tell an elastic stage how many ranks did. */
async function joinSegment(deps: TrainShardDeps, input: TrainShardInput, ctx: Context): Promise<Group> {
  const { spec } = input;
  const joining = joinGroup({
    nc: deps.nc,
    runId: input.runId,
    groupId: input.groupId,
    rank: input.rank,
    worldSize: input.worldSize,
    timeoutMs: spec.train.collectiveTimeout * 1000,
    joinTimeoutMs: spec.train.joinTimeout * 1000,
  });
  try {
    return await Promise.race([joining, ctx.cancelled]);
  } catch (e) {
    void joining.then(
      (g) => g.close(),
      () => undefined,
    );
    if (e instanceof PeerLostError && e.op === 'join') {
      const details: JoinShortfall = { op: 'join', missing: e.ranks };
      throw ApplicationFailure.create({ message: e.message, type: e.name, details: [details], cause: e });
    }
    throw e;
  }
}

/** The world group and the layout's runtime, with this rank's state restored from the checkpoint. */
async function openLayout(
  deps: TrainShardDeps,
  input: TrainShardInput,
  ctx: Context,
  trainer: Trainer<any>,
  backend: string,
): Promise<{ group: Group; runtime: RankRuntime; manifest?: CheckpointManifest }> {
  const { runId, stage, spec, worldSize, fromStep } = input;
  const mismatch = (was: Record<string, unknown> | undefined) => {
    if (was?.backend !== undefined && was.backend !== backend)
      deps.log(
        `resuming a checkpoint written on the ${String(was.backend)} backend on ${backend}: training continues correctly, but not bit-identically to a run that stayed on one backend`,
      );
  };
  if (spec.train.parameterSharding === 'host') {
    const manifest = fromStep > 0 ? await deps.checkpoints.manifestAt(runId, stage, fromStep) : undefined;
    if (fromStep > 0 && !manifest)
      throw new Error(`committed checkpoint ${runId}/${stage}/${fromStep} has no manifest`);
    if (manifest) trainer.loadState(await deps.checkpoints.loadPart(manifest, 'params'));
    mismatch(manifest?.meta);
    const group = await joinSegment(deps, input, ctx);
    try {
      return { group, runtime: await openShardedRuntime(deps, input, group, trainer, manifest), manifest };
    } catch (e) {
      await group.close().catch(() => undefined);
      throw e;
    }
  }
  const psgd = new PowerSgd(trainer.paramSpecs(), spec.powersgd, {
    rank: input.rank,
    worldSize,
    seed: spec.train.seed,
  });
  const restored = await restoreRankState(deps.checkpoints, input, trainer, psgd);
  if (restored.powersgd === 'resharded')
    deps.log(
      `world size ${String(restored.manifest?.meta.worldSize)} → ${worldSize}: PowerSGD error buffers re-sharded`,
    );
  mismatch(restored.manifest?.meta);
  const group = await joinSegment(deps, input, ctx);
  const runtime = new FlatRuntime(deps.checkpoints, input, trainer, psgd, group);
  return { group, runtime, manifest: restored.manifest };
}

export async function trainShard(deps: TrainShardDeps, input: TrainShardInput): Promise<TrainShardResult> {
  const ctx = Context.current();
  const { stage, spec, worldSize } = input;
  if (worldSize > spec.train.batchSize) {
    throw ApplicationFailure.nonRetryable(
      `worldSize ${worldSize} exceeds train.batchSize ${spec.train.batchSize}: a rank would get no sample`,
      'ConfigError',
    );
  }
  // 1. State: model + optimizer from the committed checkpoint (or the seed), this rank's PowerSGD state;
  // 2. the group: a barrier that every rank of this segment launch passes, or PeerLostError.
  const backend = await initTfBackend();
  const sharded = spec.train.parameterSharding === 'host';
  const trainer = await createStageTrainer(stage, spec, worldSize, { optimizer: !sharded });
  let opened: { group: Group; runtime: RankRuntime; manifest?: CheckpointManifest };
  let source: StageBatchSource;
  try {
    source = await stageBatches(stage, spec, deps.checkpoints, input.runId);
    opened = await openLayout(deps, input, ctx, trainer, backend);
  } catch (e) {
    trainer.dispose();
    throw e;
  }
  const { group, runtime } = opened;
  // Rank 0 keeps the stage's curves; a resumed segment continues those of its checkpoint.
  const curves =
    input.rank === 0 ? await loadCurves(deps.checkpoints, opened.manifest, input, deps.log) : undefined;
  // Closing the group makes a pending collective operation reject, so a cancelled rank frees its slot.
  const onAbort = () => void Promise.all([group.close(), runtime.close()]).catch(() => undefined);
  ctx.cancellationSignal.addEventListener('abort', onAbort);
  try {
    return await runSteps(deps, input, { ctx, trainer, source, runtime, group, backend, curves });
  } finally {
    ctx.cancellationSignal.removeEventListener('abort', onAbort);
    await runtime.close().catch(() => undefined);
    await group.close().catch(() => undefined);
    trainer.dispose();
  }
}

interface Segment {
  ctx: Context;
  trainer: Trainer<any>;
  source: StageBatchSource;
  runtime: RankRuntime;
  group: Group;
  backend: string;
  /** Rank 0's curves of the stage. */
  curves?: RunCurves;
}

/** Rank 0's progress signals to the run's workflow; a failed signal is logged, never fatal. */
function progressReporter(deps: TrainShardDeps, input: TrainShardInput) {
  const handle = deps.client.workflow.getHandle(input.progressWorkflowId);
  return async (p: {
    step: number;
    total: number;
    loss: number;
    metrics: Record<string, number>;
    stepsPerSec: number;
    bytesRaw: number;
    bytesSent: number;
    checkpointStep: number;
  }) => {
    const report: ProgressReport = {
      stage: input.stage,
      step: p.step,
      totalSteps: p.total,
      loss: p.loss,
      lr: p.metrics.lr ?? NaN,
      tau: p.metrics.tau,
      beta: p.metrics.beta,
      stepsPerSec: p.stepsPerSec,
      worldSize: input.worldSize,
      bytesRaw: p.bytesRaw,
      bytesSent: p.bytesSent,
      checkpointStep: p.checkpointStep,
    };
    await handle
      .signal(progressSignal, report)
      .catch((e: unknown) => deps.log('progress signal failed', { error: String(e) }));
  };
}

/** 3. Steps from fromStep until toStep, a resize at a checkpoint, or cancellation. */
async function runSteps(deps: TrainShardDeps, input: TrainShardInput, s: Segment): Promise<TrainShardResult> {
  const { ctx, trainer, runtime, group } = s;
  const { runId, stage, spec, rank, worldSize, fromStep, toStep } = input;
  const total = stageSteps(spec, stage);
  const report = progressReporter(deps, input);
  const t0 = Date.now();
  const stats = { loss: NaN, bytesRaw: 0, bytesSent: 0, skippedSteps: 0, lastProgress: 0 };
  let losses: number[] = [];
  let resizeTo = 0;
  // Heartbeats also flow while a step blocks (a slow peer), so only a dead process times out.
  let last = { step: fromStep, checkpointStep: fromStep };
  const beat = setInterval(
    () => ctx.heartbeat(last),
    Math.max(500, (spec.train.heartbeatTimeout * 1000) / 4),
  );
  try {
    for (let step = fromStep; step < toStep && !resizeTo; step++) {
      if (ctx.cancellationSignal.aborted) break;
      if (sigkillAt === `${stage}:${step}`) process.kill(process.pid, 'SIGKILL');
      // One step: compute (this rank's weighted share) → compress + all-reduce → apply.
      const stepStart = performance.now();
      const g = await rankGradients(trainer, s.source, spec, step, rank, worldSize);
      stats.loss = (await group.allReduce(Float32Array.of(g.loss), step, 'loss'))[0]! / worldSize;
      const r = await runtime.step(g.grads, step, stats.loss);
      const metrics = { ...g.metrics, ...r.metrics };
      if (r.skipped) stats.skippedSteps++;
      stats.bytesRaw += r.bytesRaw;
      stats.bytesSent += r.bytesSent;
      losses.push(stats.loss);

      const done = step + 1;
      const seconds = (performance.now() - stepStart) / 1000;
      s.curves?.record(done, {
        ...metrics,
        loss: stats.loss,
        seconds,
        bytesRaw: r.bytesRaw,
        bytesSent: r.bytesSent,
      });
      if (done % spec.train.checkpointEvery === 0 || done === toStep) {
        const ask = rank === 0 ? await resizeDecision(deps, input, runtime.growthUnit()) : 0;
        const facts = { step: done, loss: stats.loss, losses, backend: s.backend, resizeTo: ask };
        const { curves } = s;
        const extras =
          curves && (() => rank0Extras(deps.checkpoints, input, done, trainer, curves, deps.log));
        resizeTo = await saveCheckpoint(deps.checkpoints, input, runtime, group, facts, extras);
        losses = [];
        last = { step: done, checkpointStep: done };
        if (resizeTo && rank === 0)
          deps.log(`${stage}: world size ${worldSize} → ${resizeTo} at step ${done}`);
      } else last = { step: done, checkpointStep: last.checkpointStep };
      ctx.heartbeat(last);
      const stepsPerSec = (done - fromStep) / ((Date.now() - t0) / 1000);
      if (rank !== 0) continue;
      // Loss, steps/s, compression rate gauges (global figures: one rank reports them).
      const { bytesRaw, bytesSent } = r;
      recordTrainStep({ runId, stage, loss: stats.loss, stepsPerSec, bytesRaw, bytesSent });
      const now = Date.now();
      if (now - stats.lastProgress >= PROGRESS_EVERY_MS || done === toStep || resizeTo) {
        stats.lastProgress = now;
        await report({
          ...stats,
          step: done,
          total,
          metrics,
          stepsPerSec,
          checkpointStep: last.checkpointStep,
        });
      }
    }
  } finally {
    clearInterval(beat);
  }
  if (ctx.cancellationSignal.aborted) throw ctx.cancellationSignal.reason ?? new Error('cancelled');
  const steps = Math.max(1, last.step - fromStep);
  return {
    rank,
    step: last.step,
    loss: stats.loss,
    checkpointStep: last.checkpointStep,
    stepsPerSec: steps / ((Date.now() - t0) / 1000),
    bytesRaw: stats.bytesRaw,
    bytesSent: stats.bytesSent,
    skippedSteps: stats.skippedSteps,
    ...(resizeTo ? { resizeTo } : {}),
  };
}
