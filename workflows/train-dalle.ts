// The run: stage dvae → encodeDataset (sharded over workers) → stage transformer → publishModel.
// Workflow id = run id. Holds the run's live progress (rank 0 signals it; stages signal their events)
// for the `progress` query, and forwards pause/resume/setWorldSize to the stage in flight.
import { log, setHandler, startChild, workflowInfo, type ChildWorkflowHandle } from '@temporalio/workflow';
import {
  pauseSignal,
  progressQuery,
  progressSignal,
  resumeSignal,
  setWorldSizeSignal,
  stageEventSignal,
  stageSteps,
  type RunProgress,
  type StageName,
  type TrainDalleInput,
  type TrainDalleResult,
  type QualityPoint,
  type TrainStageResult,
} from '../contract/index.ts';
import { utilityActivities } from './activities.ts';
import { trainStage } from './train-stage.ts';

const MAX_EVENTS = 20;
/** Quality points a run keeps in its state: beyond this, the older half is thinned to every other point. */
export const MAX_QUALITY_POINTS = 200;

/** `points` with `q` added: a point for a (stage, step) already there is replaced (a relaunched segment
 *  measures the same checkpoint again); over the cap, the older half is thinned to every other point. */
export function addQualityPoint(points: QualityPoint[], q: QualityPoint): QualityPoint[] {
  const out = points.filter((p) => !(p.stage === q.stage && p.step === q.step));
  out.push(q);
  if (out.length <= MAX_QUALITY_POINTS) return out;
  const half = Math.floor(out.length / 2);
  return [...out.slice(0, half).filter((_, i) => i % 2 === 0), ...out.slice(half)];
}

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
    quality: [],
  };
  const restartsBy: Record<string, number> = {};
  let child: ChildWorkflowHandle<typeof trainStage> | undefined;
  const event = (m: string) => {
    p.events.push(m);
    if (p.events.length > MAX_EVENTS) p.events.shift();
  };

  setHandler(progressQuery, () => p);
  setHandler(progressSignal, (r) => {
    // A measurement stays valid after its stage ends; the rest of a late report does not.
    if (r.quality) p.quality = addQualityPoint(p.quality ?? [], r.quality);
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
    p.worldSize = w;
    await forward((c) => c.signal(setWorldSizeSignal, w));
  });

  const runStage = async (stage: StageName): Promise<TrainStageResult> => {
    Object.assign(p, {
      stage,
      step: 0,
      totalSteps: stageSteps(spec, stage),
      checkpointStep: 0,
      loss: null,
    });
    child = await startChild(trainStage, {
      workflowId: `${runId}-${stage}`,
      args: [
        { runId, stage, spec, worldSize: p.worldSize, parentId: workflowInfo().workflowId, paused: p.paused },
      ],
    });
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
