// The run: stage dvae → encodeDataset (sharded over workers) → stage transformer → publishModel.
// Workflow id = run id. Holds the run's live progress (rank 0 signals it; stages signal their events)
// for the `progress` query, and forwards pause/resume/setWorldSize to the stage in flight.
import { log, setHandler, startChild, workflowInfo, type ChildWorkflowHandle } from '@temporalio/workflow';
import {
  clampWorldSize,
  pauseSignal,
  progressQuery,
  progressSignal,
  resumeSignal,
  setWorldSizeSignal,
  stageEventSignal,
  stageSteps,
  stageWorkflowId,
  type RunProgress,
  type StageName,
  type TrainDalleInput,
  type TrainDalleResult,
  type TrainStageResult,
} from '../contract/index.ts';
import { utilityActivities } from './activities.ts';
import { trainStage } from './train-stage.ts';

const MAX_EVENTS = 20;

export async function trainDalle(input: TrainDalleInput): Promise<TrainDalleResult> {
  const { runId, spec } = input;
  const p: RunProgress = {
    stage: 'dvae',
    step: 0,
    totalSteps: stageSteps(spec, 'dvae'),
    loss: null,
    lr: null,
    tau: null,
    beta: null,
    checkpointStep: 0,
    stepsPerSec: 0,
    worldSize: spec.train.worldSize,
    restarts: 0,
    paused: false,
    bytesRaw: 0,
    bytesSent: 0,
    lastResume: null,
    events: [],
  };
  const restartsBy: Record<string, number> = {};
  let child: ChildWorkflowHandle<typeof trainStage> | undefined;
  const event = (m: string) => {
    p.events.push(m);
    if (p.events.length > MAX_EVENTS) p.events.shift();
  };

  setHandler(progressQuery, () => p);
  setHandler(progressSignal, (r) => {
    if (r.stage !== p.stage) return; // a late report from a finished stage
    Object.assign(p, {
      step: r.step,
      totalSteps: r.totalSteps,
      loss: r.loss,
      lr: r.lr,
      tau: r.tau ?? null,
      beta: r.beta ?? null,
      stepsPerSec: r.stepsPerSec,
      worldSize: r.worldSize,
      checkpointStep: r.checkpointStep,
    });
  });
  setHandler(stageEventSignal, (e) => {
    if (e.checkpointStep !== undefined && e.stage === p.stage) p.checkpointStep = e.checkpointStep;
    if (e.restarts !== undefined) {
      restartsBy[e.stage] = e.restarts;
      p.restarts = Object.values(restartsBy).reduce((a, b) => a + b, 0);
    }
    if (e.worldSize !== undefined && e.stage === p.stage) p.worldSize = e.worldSize;
    if (e.resumedFrom !== undefined)
      p.lastResume = { stage: e.stage, fromStep: e.resumedFrom, restarts: p.restarts };
    if (e.message) event(e.message);
  });
  const forward = async (fn: (c: ChildWorkflowHandle<typeof trainStage>) => Promise<void>) => {
    if (child)
      await fn(child).catch((e: unknown) => log.warn('could not forward signal', { error: String(e) }));
  };
  setHandler(pauseSignal, async () => {
    p.paused = true;
    await forward((c) => c.signal(pauseSignal));
  });
  setHandler(resumeSignal, async () => {
    p.paused = false;
    await forward((c) => c.signal(resumeSignal));
  });
  setHandler(setWorldSizeSignal, async (w) => {
    const next = clampWorldSize(spec, w);
    if (next === undefined) return log.warn('ignoring setWorldSize', { w });
    p.worldSize = next;
    await forward((c) => c.signal(setWorldSizeSignal, next));
  });

  const runStage = async (stage: StageName): Promise<TrainStageResult> => {
    Object.assign(p, {
      stage,
      step: 0,
      totalSteps: stageSteps(spec, stage),
      checkpointStep: 0,
      loss: null,
    });
    const { worldSize, paused } = p;
    child = await startChild(trainStage, {
      workflowId: stageWorkflowId(runId, stage),
      args: [{ runId, stage, spec, worldSize, parentId: workflowInfo().workflowId, paused }],
    });
    // A signal that came while the child was starting found no child to forward to: pass it on now.
    if (p.worldSize !== worldSize) await forward((c) => c.signal(setWorldSizeSignal, p.worldSize));
    if (p.paused !== paused) await forward((c) => c.signal(p.paused ? pauseSignal : resumeSignal));
    const result = await child.result();
    child = undefined;
    p.bytesRaw += result.bytesRaw;
    p.bytesSent += result.bytesSent;
    return result;
  };

  const dvae = await runStage('dvae');

  // Tokenizer and image tokens for stage 2, sharded over the workers that are there.
  Object.assign(p, { stage: 'encode', step: 0, totalSteps: 0 });
  const shards = p.worldSize;
  const [tokenizer, ...tokens] = await Promise.all([
    utilityActivities.prepareTokenizer({ runId, spec }),
    ...Array.from({ length: shards }, (_, shard) =>
      utilityActivities.encodeShard({ runId, spec, shard, shards, dvaeStep: dvae.step }),
    ),
  ]);
  await utilityActivities.commitEncoded({ runId, spec, parts: [tokenizer!, ...tokens], shards });

  const transformer = await runStage('transformer');

  Object.assign(p, { stage: 'publish' });
  const model = await utilityActivities.publishModel({ runId, spec });
  Object.assign(p, { stage: 'done' });
  event(`published ${model.name} v${model.version}`);
  return { runId, dvae, transformer, model, restarts: p.restarts };
}
