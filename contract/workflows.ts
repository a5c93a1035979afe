// The training workflows as their clients see them: the task queue, the workflow types with their input
// and result, and the progress they report. Workflow ids: the run id for trainDalle, `<run>-<stage>` for
// its trainStage children.
import type { RunSpec } from '../config/spec.ts';
import type { PublishResult, StageName } from './activities.ts';
import type { QualityPoint } from './quality.ts';

/** The task queue every `dalle worker` polls and every run is started on. */
export const TASK_QUEUE = 'dalle-train';

/** The task queue of one host's workers (`dalle-train@<host>`): every `dalle worker` polls it next to the
 *  shared queue, for rank activities only, so that a sharded segment can place rank h·G + l on host h. */
export function hostTaskQueue(taskQueue: string, hostId: string): string {
  return `${taskQueue}@${hostId}`;
}

/** The workflow id of a run's trainStage child for `stage`. */
export function stageWorkflowId(runId: string, stage: StageName): string {
  return `${runId}-${stage}`;
}

/** Workflow type names as registered by the worker (the exported names of workflows/index.ts). */
export const WORKFLOW_TYPE = { trainDalle: 'trainDalle', trainStage: 'trainStage' } as const;

/** `patched()` ids of workflow changes, recorded in the histories of runs that took the new path. */
export const PATCH = {
  /** trainDalle runs stage `rerank` between the transformer and publishing. */
  rerankStage: 'rerank-stage',
  /** trainStage places a sharded segment's ranks on per-host task queues (activity placeRanks first). */
  hostPlacement: 'host-placement',
} as const;

export interface TrainDalleInput {
  runId: string;
  spec: RunSpec;
  /** Set by trainDalle itself when it continues as new between phases: what is done, and the progress
   *  state to go on with. Absent for a new run. */
  carry?: TrainDalleCarry;
}

/** A run's state across continue-as-new of trainDalle (only at phase boundaries). */
export interface TrainDalleCarry {
  /** The next phase to run. */
  next: 'encode' | 'transformer' | 'rerank' | 'publish';
  dvae: TrainStageResult;
  transformer?: TrainStageResult;
  rerank?: TrainStageResult;
  progress: RunProgress;
  /** Restarts per stage so far. */
  restartsBy: Record<string, number>;
}

export interface TrainDalleResult {
  runId: string;
  dvae: TrainStageResult;
  transformer: TrainStageResult;
  /** Absent when the spec trains no reranker (rerank.steps = 0) or the run predates the stage. */
  rerank?: TrainStageResult;
  model: PublishResult;
  restarts: number;
  /** The run's final progress (quality points, events): a finished run's status needs no worker to answer a
   *  query. Absent in runs that finished before it was recorded. */
  progress?: RunProgress;
}

export interface TrainStageInput {
  runId: string;
  stage: StageName;
  spec: RunSpec;
  worldSize: number;
  /** The root workflow (receives stage events and rank progress). */
  parentId: string;
  /** Carried across continue-as-new. */
  restarts?: number;
  groupSeq?: number;
  paused?: boolean;
}

export interface TrainStageResult {
  stage: StageName;
  step: number;
  loss: number;
  restarts: number;
  bytesRaw: number;
  bytesSent: number;
  /** Σ over the completed segments' ranks of TrainShardResult.stepMs / exposedCommMs (since the last
   *  continue-as-new): exposedCommMs / stepMs is the share of step time spent waiting on gradients. */
  stepMs?: number;
  exposedCommMs?: number;
}

/** A run: stage dvae → encode the dataset → stage transformer → stage rerank → publish the model. */
export type TrainDalleWorkflow = (input: TrainDalleInput) => Promise<TrainDalleResult>;
/** One stage of a run: segments of W rank activities from the last committed checkpoint. */
export type TrainStageWorkflow = (input: TrainStageInput) => Promise<TrainStageResult>;

/** What workflows/index.ts must export (checked there at compile time). */
export interface DalleWorkflows {
  [WORKFLOW_TYPE.trainDalle]: TrainDalleWorkflow;
  [WORKFLOW_TYPE.trainStage]: TrainStageWorkflow;
}

/** The answer of query `progress`. */
export interface RunProgress {
  stage: StageName | 'encode' | 'publish' | 'done';
  step: number;
  totalSteps: number;
  loss: number | null;
  lr: number | null;
  tau: number | null;
  beta: number | null;
  checkpointStep: number;
  stepsPerSec: number;
  worldSize: number;
  restarts: number;
  paused: boolean;
  bytesRaw: number;
  bytesSent: number;
  /** The last relaunch after a failure: which checkpoint it resumed from. */
  lastResume: { stage: StageName; fromStep: number; restarts: number } | null;
  /** Latest events worth a human's attention (restarts, checkpoint fallbacks), newest last. */
  events: string[];
  /** Ranks the current segment is waiting for (no worker has started them yet), when it waits. Filled in by
   *  clients from rank 0's progress record, like step and loss (never sent into workflow history). */
  waitingFor?: number[];
  /** Quality measured at checkpoints, both stages, oldest first (thinned when long: see trainDalle).
   *  Absent in the progress of runs started before it existed. */
  quality?: QualityPoint[];
}

/** A stage's notable events, from trainStage to the root. */
export interface StageEvent {
  stage: StageName;
  checkpointStep?: number;
  restarts?: number;
  /** Set when a segment is relaunched after a failure: the checkpoint step it resumes from. */
  resumedFrom?: number;
  /** Set when the stage changes its world size (the next stage starts with it too). */
  worldSize?: number;
  message?: string;
}
