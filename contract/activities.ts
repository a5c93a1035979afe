// Payloads between workflows and activities: pointers and small numbers only, never tensors (Temporal's
// payload limit is 2 MiB and history keeps every payload).
import type { RunSpec } from '../config/spec.ts';
import type { QualityPoint } from './quality.ts';

/** The training stages of a run, in order: the dVAE, the transformer, the CLIP-style reranker. */
export type StageName = 'dvae' | 'transformer' | 'rerank';

/** Steps a stage trains for (its end step). A spec written before the reranker existed has no `rerank`
 *  section (workflows see specs as they were sent, without defaults): no rerank steps then. */
export function stageSteps(spec: RunSpec, stage: StageName): number {
  if (stage === 'dvae') return spec.dvae.steps;
  if (stage === 'transformer') return spec.transformer.steps;
  return (spec.rerank as RunSpec['rerank'] | undefined)?.steps ?? 0;
}

/** The PowerSGD settings a stage trains with: `spec.powersgd`, turned off for a stage that its `stages`
 *  leaves out. */
export function stagePowerSgd(spec: RunSpec, stage: StageName): RunSpec['powersgd'] {
  const { stages } = spec.powersgd;
  return stages === undefined || stages.includes(stage)
    ? spec.powersgd
    : { ...spec.powersgd, enabled: false };
}

/** Global batch of a stage: train.batchSize, or the reranker's own rerank.batchSize when set. */
export function stageBatchSize(spec: RunSpec, stage: StageName): number {
  const own = stage === 'rerank' ? (spec.rerank as RunSpec['rerank'] | undefined)?.batchSize : undefined;
  return own ?? spec.train.batchSize;
}

export interface ResolveCheckpointInput {
  runId: string;
  stage: StageName;
  /** The run's spec: a checkpoint committed under another is refused (absent in older histories). */
  spec?: RunSpec;
}

/** The newest committed checkpoint whose parts all verify (step 0 = fresh start). */
export interface ResolvedCheckpoint {
  step: number;
  /** Fallbacks taken to get here (a corrupt or missing part), for the workflow's log and status. */
  fallbacks: string[];
}

export interface TrainShardInput {
  runId: string;
  stage: StageName;
  spec: RunSpec;
  rank: number;
  worldSize: number;
  /** Fresh for every segment launch, so ranks of an abandoned attempt can never talk to a new one. */
  groupId: string;
  /** Committed checkpoint to start from (0 = initialize from the seed). */
  fromStep: number;
  /** Exclusive end of this segment. */
  toStep: number;
  /** Workflow that receives `progress` signals (the run's root workflow). */
  progressWorkflowId: string;
}

export interface TrainShardResult {
  rank: number;
  /** The host of the worker that ran the rank (absent in results recorded before it was reported). */
  hostId?: string;
  step: number;
  loss: number;
  checkpointStep: number;
  stepsPerSec: number;
  /** Gradient bytes this rank would have sent uncompressed vs what it sent. */
  bytesRaw: number;
  bytesSent: number;
  skippedSteps: number;
  /** Wall ms of this rank's steps (compute, gradient exchange, apply; not checkpoints), and the part of
   *  it spent waiting for the collective (communication the step did not hide). */
  stepMs?: number;
  exposedCommMs?: number;
  /** Rank 0: the segment stopped at checkpoint `step` because the world should become this size (a
   *  setWorldSize, or idle workers an elastic run adopts). */
  resizeTo?: number;
}

/** Details of the failure of a rank whose peers did not all arrive at the segment's start (type
 *  'PeerLostError'): an elastic run shrinks to the ranks that did. */
export interface JoinShortfall {
  op: 'join';
  /** Ranks that never arrived. */
  missing: number[];
}

/** Rank-0 progress within a segment (signalled at most about once a second). */
export interface ProgressReport {
  stage: StageName;
  step: number;
  totalSteps: number;
  loss: number;
  lr: number;
  tau?: number;
  beta?: number;
  stepsPerSec: number;
  worldSize: number;
  bytesRaw: number;
  bytesSent: number;
  /** Last checkpoint this segment committed (or the one it started from). */
  checkpointStep: number;
  /** Quality measured at a checkpoint since the last report (each point is reported once). */
  quality?: QualityPoint;
}

export interface EncodeShardInput {
  runId: string;
  spec: RunSpec;
  shard: number;
  shards: number;
  /** Committed dVAE checkpoint whose EMA weights encode the images. */
  dvaeStep: number;
}

export interface PublishInput {
  runId: string;
  spec: RunSpec;
}

export interface PublishResult {
  name: string;
  version: number;
  sha256: string;
  bytes: number;
}
