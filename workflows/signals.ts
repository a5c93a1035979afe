// Signals and queries of the training workflows: names are part of the contract (DESIGN.md).
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ProgressReport, StageName } from '../activities/types.ts';

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
}

/** A stage's notable events, from trainStage to the root. */
export interface StageEvent {
  stage: StageName;
  checkpointStep?: number;
  restarts?: number;
  /** Set when a segment is relaunched after a failure: the checkpoint step it resumes from. */
  resumedFrom?: number;
  message?: string;
}

export const progressQuery = defineQuery<RunProgress>('progress');
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
export const setWorldSizeSignal = defineSignal<[number]>('setWorldSize');
export const progressSignal = defineSignal<[ProgressReport]>('reportProgress');
export const stageEventSignal = defineSignal<[StageEvent]>('stageEvent');
