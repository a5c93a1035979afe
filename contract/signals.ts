// Signals and queries of the training workflows. Their names are recorded in every run's history and used
// by clients of running workflows: they never change.
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { ProgressReport } from './activities.ts';
import type { RunProgress, StageEvent } from './workflows.ts';

/** `progress` (trainDalle): the run's live progress. */
export const progressQuery = defineQuery<RunProgress>('progress');
/** `pause` / `resume` (trainDalle, forwarded to the stage in flight): stop launching segments, go on. */
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** `setWorldSize` (trainDalle → trainStage): ranks from the next checkpoint on (the running segment stops
 *  there and the next starts with W ranks from it); the global batch stays fixed. */
export const setWorldSizeSignal = defineSignal<[number]>('setWorldSize');
/** `worldSize` (trainStage): the world size the stage wants for its next segment; rank 0 asks at each
 *  checkpoint and ends the segment there when it differs from the running one. */
export const worldSizeQuery = defineQuery<number>('worldSize');
/** `reportProgress` (rank 0's trainShard → trainDalle): step, loss and throughput within a segment. */
export const progressSignal = defineSignal<[ProgressReport]>('reportProgress');
/** `stageEvent` (trainStage → trainDalle): checkpoints committed, restarts, resumes, fallbacks. */
export const stageEventSignal = defineSignal<[StageEvent]>('stageEvent');
