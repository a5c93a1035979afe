// Rank r of W for one segment: load the committed checkpoint, join the NATS group, run steps
// (compute → PowerSGD all-reduce → apply), and store a checkpoint every `checkpointEvery` steps: each rank
// its PowerSGD state, rank 0 the model state, then rank 0 commits once every rank has stored its part (a
// barrier). The heartbeat starts first (before checkpoint load, dataset open and group join) and keeps
// flowing through long synchronous steps (heartbeat.ts). Rank 0 writes live progress to the run's KV record,
// not into workflow history. Cancellation stops at a step boundary.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Client } from '@temporalio/client';
import type { NatsConnection } from 'nats';
import { specHash } from '../config/index.ts';
import { joinGroup, PeerLostError, PowerSgd, type Group } from '../collective/index.ts';
import { initTfBackend, type Trainer } from '../model/index.ts';
import { rankConnection } from '../security/run-credentials.ts';
import { CheckpointStore, CURVES_PART, RunCurves, SAMPLES_PART, type PartRef } from '../store/index.ts';
import { recordTrainStep } from '../telemetry/index.ts';
import { stageBatches } from './batches.ts';
import { renderCheckpointSamples } from './checkpoint-samples.ts';
import { asNonRetryable } from './errors.ts';
import { startHeartbeat, type Heartbeat } from './heartbeat.ts';
import type { QualityProbe } from '../eval/index.ts';
import { createQualityProbe, measureQuality } from './quality.ts';
import { createStageTrainer } from './stage-trainer.ts';
import {
  progressSignal,
  stageBatchSize,
  stageSteps,
  type ProgressReport,
  type TrainShardInput,
  type TrainShardResult,
} from '../contract/index.ts';

export interface TrainShardDeps {
  nc: NatsConnection;
  checkpoints: CheckpointStore;
  /** Temporal client of the worker: rank 0 signals each checkpoint's quality point to the run's workflow
   *  (one signal per checkpoint; step-level progress goes to the run's KV record). */
  client: Client;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

/** How often rank 0 rewrites the run's progress record. */
const PROGRESS_EVERY_MS = 2000;

/** Fault injection for failure tests: `DALLE_TEST_SIGKILL_AT=<stage>:<step>` makes this worker process
 *  SIGKILL itself when one of its ranks reaches that step, mid-segment, exactly as a dying machine would. */
const sigkillAt = process.env.DALLE_TEST_SIGKILL_AT;
/** `DALLE_TEST_BLOCK_AT=<stage>:<step>:<seconds>`: the rank keeps its thread busy (no await) that long at
 *  that step, as one huge synchronous step would. */
const blockAt = process.env.DALLE_TEST_BLOCK_AT;

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

/** Every rank's `mine` (equal lengths), in rank order: an all-reduce of a buffer where each rank fills only
 *  its own slot. Exact: every other slot adds zeros. */
async function allGather(
  group: Group,
  mine: Float32Array,
  step: number,
  rank: number,
  worldSize: number,
): Promise<Float32Array[]> {
  const v = new Float32Array(worldSize * mine.length);
  v.set(mine, rank * mine.length);
  const sum = await group.allReduce(v, step, 'gather');
  return Array.from({ length: worldSize }, (_, r) => sum.slice(r * mine.length, (r + 1) * mine.length));
}

/** What a trainer that needs its peers' batch (the reranker: pair embeddings, so every pair of the global
 *  batch is a negative) gets from them before computing gradients, and the milliseconds spent waiting. */
async function exchange(
  s: Pick<Running, 'trainer' | 'group'>,
  batch: Awaited<ReturnType<Running['source']['batch']>>,
  step: number,
  rank: number,
  worldSize: number,
): Promise<{ gathered: Float32Array[] | undefined; ms: number }> {
  if (!s.trainer.exchange) return { gathered: undefined, ms: 0 };
  const mine = s.trainer.exchange(batch, step, rank);
  const t = performance.now();
  const gathered = await allGather(s.group, mine, step, rank, worldSize);
  return { gathered, ms: performance.now() - t };
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
        meta: {
          worldSize,
          loss,
          groupId: input.groupId,
          backend,
          specHash: specHash(input.spec),
          ...extras?.meta,
        },
      },
      input.spec.train.keepCheckpoints,
    );
}

/** The checkpoint a segment starts from (model + optimizer, and this rank's PowerSGD state), its step, and
 *  on rank 0 the stage's curves so far (a resumed segment continues those of its checkpoint). */
async function loadRankState(
  deps: TrainShardDeps,
  input: TrainShardInput,
  trainer: Trainer<unknown>,
  psgd: PowerSgd,
  backend: string,
): Promise<{ checkpointStep: number; curves: RunCurves | undefined }> {
  const { runId, stage, rank, worldSize, fromStep } = input;
  const fresh = rank === 0 ? new RunCurves() : undefined;
  if (fromStep === 0) return { checkpointStep: 0, curves: fresh };
  const manifest = await deps.checkpoints.manifestAt(runId, stage, fromStep);
  if (!manifest) throw new Error(`committed checkpoint ${runId}/${stage}/${fromStep} has no manifest`);
  CheckpointStore.checkSpec(manifest, specHash(input.spec)); // the same run id under another spec: fatal
  trainer.loadState(await deps.checkpoints.loadPart(manifest, 'params'));
  let curves = fresh;
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
  if (manifest.meta.backend !== undefined && manifest.meta.backend !== backend) {
    deps.log(
      `resuming a checkpoint written on the ${String(manifest.meta.backend)} backend on ${backend}: training continues correctly, but not bit-identically to a run that stayed on one backend`,
    );
  }
  return { checkpointStep: fromStep, curves };
}

/** The group of this segment launch. Waiting for peers is not a failure of the run: when the ranks that
 *  never arrived are all that went wrong, the failure says so (type `PeersAbsent`) and the workflow waits
 *  and relaunches without spending a restart. A cancellation ends the wait at once. */
async function joinSegment(
  deps: TrainShardDeps,
  input: TrainShardInput,
  nc: NatsConnection,
  cancelled: AbortSignal,
  onWaiting: (missing: number[]) => void,
): Promise<Group> {
  const { runId, rank, worldSize, spec } = input;
  let rejected = 0;
  const joining = joinGroup({
    nc,
    runId,
    groupId: input.groupId,
    rank,
    worldSize,
    timeoutMs: spec.train.collectiveTimeout * 1000,
    joinTimeoutMs: spec.train.joinTimeout * 1000,
    onWaiting,
    // Forged, stale or misaddressed messages are dropped by the group; say so (sparingly: a flood of
    // them must not become a flood of log lines).
    onRejected: (r) => {
      rejected++;
      if (rejected <= 5 || rejected % 1000 === 0)
        deps.log(`rank ${rank}: rejected a collective message (${rejected} so far)`, { ...r });
    },
  });
  try {
    const onCancel = new Promise<never>((_, reject) => {
      if (cancelled.aborted) reject(cancelled.reason);
      cancelled.addEventListener('abort', () => reject(cancelled.reason));
    });
    return await Promise.race([joining, onCancel]);
  } catch (e) {
    void joining.then(
      (g) => g.close(),
      () => undefined,
    );
    if (e instanceof PeerLostError && e.op === 'join') {
      throw ApplicationFailure.create({
        message: `waiting for rank(s) ${e.ranks.join(', ')}: ${e.reason} (no worker free for them yet?)`,
        type: 'PeersAbsent',
        details: [{ ranks: e.ranks }],
        cause: e,
      });
    }
    throw e;
  }
}

export async function trainShard(deps: TrainShardDeps, input: TrainShardInput): Promise<TrainShardResult> {
  const ctx = Context.current();
  const { stage, spec, rank, worldSize, fromStep } = input;
  const globalBatch = stageBatchSize(spec, stage);
  if (globalBatch % worldSize !== 0) {
    throw ApplicationFailure.nonRetryable(
      `the ${stage} stage's global batch ${globalBatch} is not divisible by worldSize ${worldSize}`,
      'ConfigError',
    );
  }
  // First thing: the heartbeat. Loading a checkpoint, opening a dataset and waiting for peers all take time.
  const hb = startHeartbeat(
    ctx,
    {
      intervalMs: Math.max(500, (spec.train.heartbeatTimeout * 1000) / 4),
      stallMs: spec.train.stepTimeout * 1000,
      log: (m) => deps.log(`rank ${rank}: ${m}`),
    },
    { step: fromStep, checkpointStep: fromStep },
  );
  try {
    const result = await runShard(deps, input, hb);
    await hb.settle({ result });
    return result;
  } catch (e) {
    await hb
      .settle({ error: asNonRetryable(e) })
      .catch((err: unknown) => deps.log(`rank ${rank}: outcome not reported`, { error: String(err) }));
    throw e;
  } finally {
    await hb.close();
  }
}

/** 1–3 of a rank's segment, under its heartbeat. */
async function runShard(
  deps: TrainShardDeps,
  input: TrainShardInput,
  hb: Heartbeat,
): Promise<TrainShardResult> {
  const { runId, stage, spec, rank, worldSize } = input;
  // Rank 0 reports steps; any rank that waits for peers says so (rank 0 may be the one nobody runs yet).
  const progress = progressReporter(deps, input);
  let trainer: Trainer<unknown> | undefined;
  let link: Awaited<ReturnType<typeof rankConnection>> | undefined;
  let group: Group | undefined;
  let probe: QualityProbe | undefined;
  try {
    // 1. State: model + optimizer from the committed checkpoint (or the seed), this rank's PowerSGD state.
    const backend = await initTfBackend();
    trainer = await createStageTrainer(stage, spec, worldSize);
    const source = await stageBatches(stage, spec, deps.checkpoints, runId);
    const psgd = new PowerSgd(trainer.paramSpecs(), spec.powersgd, {
      rank,
      worldSize,
      seed: spec.train.seed,
    });
    const { checkpointStep, curves } = await loadRankState(deps, input, trainer, psgd, backend);
    // Rank 0 measures quality at each checkpoint. Built before joining: its set-up (validation images
    // through the dVAE) must not hold up the other ranks.
    probe = rank === 0 ? await createQualityProbe(deps, stage, spec, runId) : undefined;
    // 2. The group (on a secured cluster over a connection confined to this run's subjects).
    link = await rankConnection(deps.nc, runId);
    group = await joinSegment(deps, input, link.nc, hb.signal, (missing) => progress.waiting(missing));
    const joined = group;
    // A cancelled rank stops waiting at once: closing the group rejects a pending collective operation.
    const onAbort = () => void joined.close().catch(() => undefined);
    hb.signal.addEventListener('abort', onAbort);
    try {
      return await runSteps(deps, input, {
        trainer,
        psgd,
        group,
        source,
        hb,
        progress,
        backend,
        checkpointStep,
        curves,
        probe,
      });
    } finally {
      hb.signal.removeEventListener('abort', onAbort);
    }
  } finally {
    await group?.close().catch(() => undefined);
    await link?.close();
    probe?.dispose();
    trainer?.dispose();
  }
}

interface Running {
  trainer: Trainer<unknown>;
  psgd: PowerSgd;
  group: Group;
  source: Awaited<ReturnType<typeof stageBatches>>;
  hb: Heartbeat;
  progress: ReturnType<typeof progressReporter>;
  backend: string;
  checkpointStep: number;
  curves: RunCurves | undefined;
  probe: QualityProbe | undefined;
}

/** 3. The steps of the segment: compute → compress + all-reduce → apply, checkpoints, progress. */
async function runSteps(deps: TrainShardDeps, input: TrainShardInput, s: Running): Promise<TrainShardResult> {
  const cancelled = s.hb.signal;
  const { runId, stage, rank, worldSize, fromStep, toStep, spec } = input;
  let { checkpointStep } = s;
  let step = fromStep;
  let loss = NaN;
  let bytesRaw = 0;
  let bytesSent = 0;
  let skippedSteps = 0;
  let stepMs = 0;
  let exposedCommMs = 0;
  const t0 = Date.now();
  for (; step < toStep; step++) {
    if (cancelled.aborted) break;
    if (sigkillAt === `${stage}:${step}`) process.kill(process.pid, 'SIGKILL');
    busyAt(stage, step);
    const stepStart = performance.now();
    const batch = await s.source.batch(step, rank, worldSize);
    // The share of exposed communication is over the training step proper (data loading excluded).
    const computeStart = performance.now();
    const ex = await exchange(s, batch, step, rank, worldSize);
    exposedCommMs += ex.ms;
    const g = s.trainer.computeGradients(batch, step, rank, ex.gathered);
    // The loss rides along in the gradients' first all-reduce (no round of its own).
    const r = await s.psgd.reduce(s.group, g.grads, step, Float32Array.of(g.loss));
    const globalLoss = r.extras[0]! / worldSize;
    let metrics = g.metrics;
    if (r.skipped) skippedSteps++;
    else metrics = { ...metrics, ...s.trainer.applyGradients(r.grads, step, globalLoss) };
    stepMs += performance.now() - computeStart;
    exposedCommMs += r.stats.exposedCommMs;
    loss = globalLoss;
    bytesRaw += r.stats.bytesRaw;
    bytesSent += r.stats.bytesSent;
    const done = step + 1;
    s.curves?.record(done, {
      ...metrics,
      loss,
      seconds: (performance.now() - stepStart) / 1000,
      bytesRaw: r.stats.bytesRaw,
      bytesSent: r.stats.bytesSent,
    });
    if (done % spec.train.checkpointEvery === 0 || done === toStep) {
      await saveCheckpoint(deps, input, done, s.trainer, s.psgd, s.group, loss, s.backend, s.curves);
      checkpointStep = done;
    }
    const stepsPerSec = (done - fromStep) / ((Date.now() - t0) / 1000);
    if (s.probe && checkpointStep === done) {
      const report = {
        step: done,
        loss,
        lr: metrics.lr ?? NaN,
        stepsPerSec,
        bytesRaw,
        bytesSent,
        checkpointStep,
      };
      await reportQuality(deps, input, s.probe, s.trainer, {
        ...report,
        tau: metrics.tau,
        beta: metrics.beta,
      });
    }
    s.hb.beat({ step: done, checkpointStep });
    // Loss, steps/s, compression rate gauges (global figures: one rank reports them).
    if (rank === 0)
      recordTrainStep({
        runId,
        stage,
        loss,
        stepsPerSec,
        bytesRaw: r.stats.bytesRaw,
        bytesSent: r.stats.bytesSent,
      });
    if (rank === 0)
      await s.progress.step(
        {
          step: done,
          loss,
          lr: metrics.lr ?? NaN,
          tau: metrics.tau,
          beta: metrics.beta,
          stepsPerSec,
          bytesRaw,
          bytesSent,
          checkpointStep,
        },
        done === toStep,
      );
  }
  if (cancelled.aborted) throw cancelled.reason ?? new Error('cancelled');
  return {
    rank,
    step,
    loss,
    checkpointStep,
    stepsPerSec: Math.max(1, step - fromStep) / ((Date.now() - t0) / 1000),
    bytesRaw,
    bytesSent,
    skippedSteps,
    stepMs,
    exposedCommMs,
  };
}

/** Rank 0's quality point of checkpoint `r.step`, signalled once to the run's workflow, which keeps the run's
 *  list of points (bounded, and carried when it continues as new). One signal per checkpoint, so a long run's
 *  history grows with its checkpoints, not its steps. A failed measurement or signal costs only the point. */
async function reportQuality(
  deps: TrainShardDeps,
  input: TrainShardInput,
  probe: QualityProbe,
  trainer: Trainer<unknown>,
  r: Omit<ProgressReport, 'stage' | 'totalSteps' | 'worldSize' | 'quality'>,
): Promise<void> {
  const quality = await measureQuality(deps, probe, input, r.step, trainer);
  if (!quality) return;
  const { stage, spec, worldSize } = input;
  await deps.client.workflow
    .getHandle(input.progressWorkflowId)
    .signal(progressSignal, { ...r, stage, totalSteps: stageSteps(spec, stage), worldSize, quality })
    .catch((e: unknown) => deps.log('quality signal failed', { error: String(e) }));
}

/** Fault injection (DALLE_TEST_BLOCK_AT): a synchronous stretch with no await, like one enormous step. */
function busyAt(stage: string, step: number): void {
  const [st, at, seconds] = blockAt?.split(':') ?? [];
  if (st !== stage || Number(at) !== step) return;
  const until = Date.now() + Number(seconds) * 1000;
  while (Date.now() < until) {
    // busy: the event loop, and so every in-thread timer, is stopped
  }
}

/** Rank 0's progress: the run's KV record (`<run>.progress`), rewritten every few seconds and at the end
 *  of the segment; while the group waits for peers it says for which ranks. Never fails a step. */
function progressReporter(deps: TrainShardDeps, input: TrainShardInput) {
  const { runId, stage, worldSize, spec } = input;
  const total = stageSteps(spec, stage);
  let last = 0;
  const put = (r: Record<string, unknown>) =>
    deps.checkpoints
      .putProgress(runId, { stage, totalSteps: total, worldSize, fromStep: input.fromStep, ...r })
      .catch((e: unknown) => deps.log('progress record not written', { error: String(e) }));
  return {
    waiting(missing: number[]): void {
      if (Date.now() - last < PROGRESS_EVERY_MS) return;
      last = Date.now();
      void put({ step: input.fromStep, checkpointStep: input.fromStep, waitingFor: missing });
    },
    async step(r: Omit<ProgressReport, 'stage' | 'totalSteps' | 'worldSize'>, final: boolean): Promise<void> {
      if (!final && Date.now() - last < PROGRESS_EVERY_MS) return;
      last = Date.now();
      await put({ ...r });
    },
  };
}
