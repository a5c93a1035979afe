// The run: stage dvae → encodeDataset (sharded over workers) → stage transformer → stage rerank (when the
// spec trains a reranker) → publishModel.
// Workflow id = run id. Holds the run's shape for the `progress` query (stage, checkpoints, restarts,
// events: stages signal only what changes that), and forwards pause/resume/setWorldSize to the stage in
// flight. Step-level progress is not here: rank 0 writes it to the run's KV record (clients lay it over
// this query), so this history grows with stages and failures, never with time. Between phases the
// workflow continues as new when Temporal suggests it.
import {
  continueAsNew,
  log,
  patched,
  setHandler,
  startChild,
  workflowInfo,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import {
  PATCH,
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
  type TrainDalleCarry,
  type TrainDalleInput,
  type TrainDalleResult,
  type QualityPoint,
  type TrainStageResult,
} from '../contract/index.ts';
import { utilityActivities } from './activities.ts';
import { trainStage } from './train-stage.ts';

const MAX_EVENTS = 20;
/** Continue-as-new between phases (recorded histories from before it replay without it). */
const ROOT_CONTINUE_AS_NEW = 'root-continue-as-new';
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

function freshProgress(input: TrainDalleInput): RunProgress {
  return {
    stage: 'dvae',
    step: 0,
    totalSteps: stageSteps(input.spec, 'dvae'),
    loss: null,
    lr: null,
    tau: null,
    beta: null,
    checkpointStep: 0,
    stepsPerSec: 0,
    worldSize: input.spec.train.worldSize,
    restarts: 0,
    paused: false,
    bytesRaw: 0,
    bytesSent: 0,
    lastResume: null,
    events: [],
    quality: [],
  };
}

/** What the run keeps in memory: the progress the query answers, restarts per stage (a relaunched stage
 *  reports its own total), and the stage workflow in flight (signals are forwarded to it). */
interface RunState {
  p: RunProgress;
  restartsBy: Record<string, number>;
  child?: ChildWorkflowHandle<typeof trainStage>;
}

function addEvent(p: RunProgress, message: string): void {
  p.events.push(message);
  if (p.events.length > MAX_EVENTS) p.events.shift();
}

/** Passes a control signal on to the stage in flight; between stages the next stage starts with the state. */
async function forward(s: RunState, fn: (c: ChildWorkflowHandle<typeof trainStage>) => Promise<void>) {
  if (s.child)
    await fn(s.child).catch((e: unknown) => log.warn('could not forward signal', { error: String(e) }));
}

/** The `progress` query, and the reports that keep it current: quality points from rank 0 and the stages'
 *  own events (checkpoints, restarts, world size, resumes). */
function handleProgress(s: RunState): void {
  const { p } = s;
  setHandler(progressQuery, () => p);
  // Step-level progress moved to the run's KV record; rank 0 still signals each checkpoint's quality point
  // (runs started before the move also signal their steps here).
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
      s.restartsBy[e.stage] = e.restarts;
      p.restarts = Object.values(s.restartsBy).reduce((a, b) => a + b, 0);
    }
    if (e.worldSize !== undefined && e.stage === p.stage) p.worldSize = e.worldSize;
    if (e.resumedFrom !== undefined)
      p.lastResume = { stage: e.stage, fromStep: e.resumedFrom, restarts: p.restarts };
    if (e.message) addEvent(p, e.message);
  });
}

/** pause / resume / setWorldSize: recorded in the run's state and forwarded to the stage in flight. */
function handleControl(s: RunState, spec: TrainDalleInput['spec']): void {
  setHandler(pauseSignal, async () => {
    s.p.paused = true;
    await forward(s, (c) => c.signal(pauseSignal));
  });
  setHandler(resumeSignal, async () => {
    s.p.paused = false;
    await forward(s, (c) => c.signal(resumeSignal));
  });
  setHandler(setWorldSizeSignal, async (w) => {
    const next = clampWorldSize(spec, w);
    if (next === undefined) return log.warn('ignoring setWorldSize', { w });
    s.p.worldSize = next;
    await forward(s, (c) => c.signal(setWorldSizeSignal, next));
  });
}

/** One stage as a child workflow, started with the run's current world size and pause state. */
async function runStage(s: RunState, input: TrainDalleInput, stage: StageName): Promise<TrainStageResult> {
  const { runId, spec } = input;
  const { p } = s;
  Object.assign(p, { stage, step: 0, totalSteps: stageSteps(spec, stage), checkpointStep: 0, loss: null });
  const { worldSize, paused } = p;
  s.child = await startChild(trainStage, {
    workflowId: stageWorkflowId(runId, stage),
    args: [{ runId, stage, spec, worldSize, parentId: workflowInfo().workflowId, paused }],
  });
  // A signal that came while the child was starting found no child to forward to: pass it on now.
  if (p.worldSize !== worldSize) await forward(s, (c) => c.signal(setWorldSizeSignal, p.worldSize));
  if (p.paused !== paused) await forward(s, (c) => c.signal(p.paused ? pauseSignal : resumeSignal));
  const result = await s.child.result();
  s.child = undefined;
  p.bytesRaw += result.bytesRaw;
  p.bytesSent += result.bytesSent;
  return result;
}

/** At a phase boundary: continue as new when the history asks for it (nothing is in flight here). */
async function boundary(
  s: RunState,
  input: TrainDalleInput,
  carry: Omit<TrainDalleCarry, 'progress' | 'restartsBy'>,
) {
  if (patched(ROOT_CONTINUE_AS_NEW) && workflowInfo().continueAsNewSuggested)
    await continueAsNew<typeof trainDalle>({
      runId: input.runId,
      spec: input.spec,
      carry: { ...carry, progress: s.p, restartsBy: s.restartsBy },
    });
}

/** The stages from where this (possibly continued) run stands: dvae → encode → transformer → rerank. */
async function trainStages(
  s: RunState,
  input: TrainDalleInput,
): Promise<Pick<TrainDalleResult, 'dvae' | 'transformer' | 'rerank'>> {
  const { runId, spec, carry } = input;
  const next = carry?.next ?? 'dvae';
  const dvae = next === 'dvae' ? await runStage(s, input, 'dvae') : carry!.dvae;
  if (next === 'dvae' || next === 'encode') {
    if (next === 'dvae') await boundary(s, input, { next: 'encode', dvae });
    await encodeDataset(s.p, runId, spec, dvae);
  }
  let transformer = carry?.transformer;
  if (next !== 'publish' && next !== 'rerank') {
    await boundary(s, input, { next: 'transformer', dvae });
    transformer = await runStage(s, input, 'transformer');
  }
  // The reranker needs the tokenizer and the images only; it runs last so the transformer is never delayed.
  // patched(): a run recorded before this stage existed goes straight on to publishing.
  let rerank = carry?.rerank;
  const rerankNext =
    next === 'rerank' || (next !== 'publish' && stageSteps(spec, 'rerank') > 0 && patched(PATCH.rerankStage));
  if (rerankNext) {
    await boundary(s, input, { next: 'rerank', dvae, transformer });
    rerank = await runStage(s, input, 'rerank');
  }
  if (next !== 'publish') await boundary(s, input, { next: 'publish', dvae, transformer, rerank });
  return { dvae, transformer: transformer!, ...(rerank ? { rerank } : {}) };
}

export async function trainDalle(input: TrainDalleInput): Promise<TrainDalleResult> {
  const s: RunState = {
    p: input.carry?.progress ?? freshProgress(input),
    restartsBy: { ...input.carry?.restartsBy },
  };
  handleProgress(s);
  handleControl(s, input.spec);
  const stages = await trainStages(s, input);
  Object.assign(s.p, { stage: 'publish' });
  const model = await utilityActivities.publishModel({ runId: input.runId, spec: input.spec });
  Object.assign(s.p, { stage: 'done' });
  addEvent(s.p, `published ${model.name} v${model.version}`);
  return { runId: input.runId, ...stages, model, restarts: s.p.restarts, progress: s.p };
}

/** Tokenizer and image tokens for stage 2, sharded over the workers that are there. */
async function encodeDataset(
  p: RunProgress,
  runId: string,
  spec: TrainDalleInput['spec'],
  dvae: TrainStageResult,
): Promise<void> {
  Object.assign(p, { stage: 'encode', step: 0, totalSteps: 0 });
  const shards = p.worldSize;
  const [tokenizer, ...tokens] = await Promise.all([
    utilityActivities.prepareTokenizer({ runId, spec }),
    ...Array.from({ length: shards }, (_, shard) =>
      utilityActivities.encodeShard({ runId, spec, shard, shards, dvaeStep: dvae.step }),
    ),
  ]);
  await utilityActivities.commitEncoded({ runId, spec, parts: [tokenizer!, ...tokens], shards });
}
