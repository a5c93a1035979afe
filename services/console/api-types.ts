// The console API's JSON, shared by the server and the page (this file imports types only, so the browser
// build can use it). Field names are the API's contract: add freely, rename none.
import type { RunProgress } from '../../contract/workflows.ts';

export type RunStatusName = 'running' | 'completed' | 'failed' | 'cancelled' | 'terminated' | 'timed-out';

/** One row of the runs view. */
export interface RunSummary {
  runId: string;
  status: RunStatusName;
  startedAt: string;
  closedAt: string | null;
  preset: string | null;
  stage: string;
  step: number;
  totalSteps: number;
  loss: number | null;
  stepsPerSec: number | null;
  worldSize: number | null;
  restarts: number;
  paused: boolean;
  /** 1 − bytes sent / bytes an uncompressed all-reduce sends (PowerSGD's saving); null before any step. */
  compressionRate: number | null;
  /** Why live figures are missing (no worker answered the query), or why the run failed. */
  note: string | null;
}

/** The workflow's `progress` query (live while the run runs): the contract's type, so the two cannot drift. */
export type LiveProgress = RunProgress;

export interface RunStart {
  /** The run spec it was started with (null when it does not parse as one). */
  spec: { preset: string; train: { batchSize: number; worldSize: number } & Record<string, unknown> } | null;
  /** W3C trace id of the span that started the run, when it was traced. */
  traceId: string | null;
  startedAt: string;
}

export interface TimelineEntry {
  at: string;
  kind: 'stage' | 'restart' | 'resume' | 'fallback' | 'done';
  stage: string;
  message: string;
  restarts?: number;
  fromStep?: number;
}

export interface CheckpointInfo {
  stage: 'dvae' | 'transformer';
  step: number;
  createdAt: string;
  loss: number | null;
  worldSize: number | null;
  parts: { name: string; sha256: string; bytes: number }[];
  /** The manifest's word on the sample grid (kind, rows, images, ms). */
  samples: Record<string, unknown> | null;
}

export interface SampleInfo {
  stage: 'dvae' | 'transformer';
  step: number;
  /** Row labels of the grid. */
  rows: string[];
}

/** What drawing a stage's sample grids cost, from its newest checkpoint's curves. */
export interface SampleCost {
  stage: 'dvae' | 'transformer';
  grids: number;
  /** Seconds rank 0 spent drawing them. */
  sampleSeconds: number;
  /** Seconds of the stage's training steps (compute and all-reduce) up to that checkpoint. */
  stepSeconds: number;
}

/** GET /api/runs/:id */
export interface RunDetail extends RunSummary {
  workflowRunId: string;
  start: RunStart;
  progress: LiveProgress | null;
  result: {
    dvae: { step: number; loss: number };
    transformer: { step: number; loss: number };
    model: { name: string; version: number; sha256: string; bytes: number };
    restarts: number;
  } | null;
  timeline: TimelineEntry[];
  checkpoints: CheckpointInfo[];
  samples: SampleInfo[];
  sampleCost: SampleCost[];
  links: { temporal: string; trace: string | null };
}

/** GET /api/runs/:id/curves/:stage */
export interface Curves {
  stage: 'dvae' | 'transformer';
  /** Step of the checkpoint the curves were read from (0: none yet). */
  step: number;
  steps: number[];
  series: Record<string, (number | null)[]>;
}

export interface ModelVersionInfo {
  name: string;
  version: number;
  sha256: string;
  bytes: number;
  createdAt: string;
  runId: string | null;
  preset: string | null;
}

export interface ModelView {
  name: string;
  versions: ModelVersionInfo[];
  /** The version the sampler gives an unversioned request (null: not loaded, or no sampler). */
  servingVersion: number | null;
  loadedVersions: number[];
  isDefault: boolean;
}

/** GET /api/models */
export interface ModelsView {
  models: ModelView[];
  sampler: { address: string; reachable: boolean; defaultModel: string | null; error: string | null };
}

/** Every error response. */
export interface ApiError {
  error: string;
  message: string;
  field?: string;
  service?: string;
}

/** Server-sent events of POST /api/generate, by event name. */
export interface GenerateEvents {
  request: {
    prompt: string;
    num_images: number;
    seed: string;
    temperature: number;
    top_k: number;
    top_p: number;
    /** Classifier-free guidance scale (1: none). */
    guidance_scale: number;
    /** Candidates sampled per image returned; the reranker keeps the best (1: no reranking). */
    candidates: number;
  };
  progress: { tokens_done: number[]; tokens_total: number; queue_position: number };
  image: {
    index: number;
    seed: string;
    width: number;
    height: number;
    score: number;
    tokens: number[];
    png_base64: string;
  };
  done: {
    model: { name: string; version: number } | null;
    timings: {
      queue_ms: number;
      sample_ms: number;
      decode_ms: number;
      total_ms: number;
      shared_steps: number;
    };
  };
  error: { error: string; status: number; message: string; field?: string };
}
