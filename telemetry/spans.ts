// Span helpers for the training runtime: a generic `withSpan`, and the two spans the runtime names with their
// attributes — one per all-reduce per rank, one per checkpoint save/load — each also feeding its histogram.
import {
  context,
  INVALID_SPAN_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Span,
} from '@opentelemetry/api';
import { dalleMetrics, type AllReduceAttributes } from './metrics.ts';
import { ATTR_RUN_ID, getTracer } from './api.ts';

/** Span attribute keys: the contract with whoever queries traces. */
export const ATTR = {
  runId: ATTR_RUN_ID,
  stage: 'dalle.stage',
  step: 'dalle.step',
  rank: 'dalle.rank',
  worldSize: 'dalle.world_size',
  groupId: 'dalle.group_id',
  allReduceTag: 'dalle.allreduce.tag',
  bytesRaw: 'dalle.allreduce.bytes_raw',
  bytesSent: 'dalle.allreduce.bytes_sent',
  chunks: 'dalle.allreduce.chunks',
  wire: 'dalle.allreduce.wire',
  checkpointOp: 'dalle.checkpoint.op',
  checkpointPart: 'dalle.checkpoint.part',
  checkpointBytes: 'dalle.checkpoint.bytes',
  checkpointSha256: 'dalle.checkpoint.sha256',
  checkpointKey: 'dalle.checkpoint.key',
} as const;

export const SPAN_NAMES = {
  allReduce: 'collective.allReduce',
  checkpointSave: 'checkpoint.save',
  checkpointLoad: 'checkpoint.load',
} as const;

function recordError(span: Span, e: unknown): void {
  if (e instanceof Error) span.recordException(e);
  span.setStatus({
    code: SpanStatusCode.ERROR,
    message: e instanceof Error ? `${e.name}: ${e.message}` : String(e),
  });
}

/**
 * Runs `fn` inside a new active span (child of the active context), ending it when `fn` settles; a throw
 * marks the span ERROR with the exception and is rethrown unchanged.
 */
export async function withSpan<T>(
  name: string,
  attributes: Attributes,
  fn: (span: Span) => Promise<T> | T,
  kind: SpanKind = SpanKind.INTERNAL,
): Promise<T> {
  return getTracer().startActiveSpan(name, { kind, attributes }, async (span) => {
    try {
      return await fn(span);
    } catch (e) {
      recordError(span, e);
      throw e;
    } finally {
      span.end();
    }
  });
}

export interface AllReduceSpanInfo {
  runId: string;
  /** When the caller knows it (the collective itself does not). */
  stage?: 'dvae' | 'transformer' | 'rerank';
  step: number;
  rank: number;
  /** W */
  worldSize: number;
  groupId?: string;
  /** What is reduced, e.g. 'grouped', 'P', 'Q', 'dense'. */
  tag?: string;
  /** Size of the payload as fp32 before compression/encoding (what an uncompressed all-reduce would move). */
  bytesRaw: number;
  wire?: 'fp32' | 'fp16';
}

export interface AllReduceResult {
  /** Bytes this rank published for this all-reduce (payload, all chunks, resends included). */
  bytesSent: number;
  /** Messages this rank published for it. */
  chunks: number;
}

export interface AllReduceSpan {
  readonly span: Span;
  /** Call once the operation knows its wire figures (before `fn` returns). */
  setResult(r: AllReduceResult): void;
}

/**
 * One all-reduce on one rank: span `collective.allReduce` with step, W, rank, bytes raw/sent and chunk
 * count, plus a sample of `dalle.collective.allreduce.duration`. Everything the operation publishes inside
 * `fn` is under this span's context, so traceparent headers on its NATS messages point at it.
 */
export function traceAllReduce<T>(info: AllReduceSpanInfo, fn: (s: AllReduceSpan) => Promise<T>): Promise<T> {
  const t0 = performance.now();
  const attrs: AllReduceAttributes = {
    'dalle.run_id': info.runId,
    'dalle.rank': info.rank,
    ...(info.tag !== undefined ? { 'dalle.allreduce.tag': info.tag } : {}),
    ...(info.stage !== undefined ? { 'dalle.stage': info.stage } : {}),
  };
  return withSpan(
    SPAN_NAMES.allReduce,
    {
      [ATTR.runId]: info.runId,
      ...(info.stage !== undefined ? { [ATTR.stage]: info.stage } : {}),
      [ATTR.step]: info.step,
      [ATTR.rank]: info.rank,
      [ATTR.worldSize]: info.worldSize,
      [ATTR.bytesRaw]: info.bytesRaw,
      'messaging.system': 'nats',
      ...(info.groupId !== undefined ? { [ATTR.groupId]: info.groupId } : {}),
      ...(info.tag !== undefined ? { [ATTR.allReduceTag]: info.tag } : {}),
      ...(info.wire !== undefined ? { [ATTR.wire]: info.wire } : {}),
    },
    async (span) => {
      try {
        return await fn({
          span,
          setResult: (r) => span.setAttributes({ [ATTR.bytesSent]: r.bytesSent, [ATTR.chunks]: r.chunks }),
        });
      } finally {
        dalleMetrics().allReduceSeconds.record((performance.now() - t0) / 1000, attrs);
      }
    },
  );
}

export interface CheckpointSpanInfo {
  runId: string;
  /** 'dvae', 'transformer', 'rerank', or another store stage (the encoded dataset's). */
  stage: string;
  step: number;
  /** The part (e.g. 'state', 'errbuf-r1'), or absent for a whole checkpoint. */
  part?: string;
  /** Object key, e.g. runs/<runId>/<stage>/<step>/<part>. */
  key?: string;
}

export interface CheckpointSpan {
  readonly span: Span;
  /** Size and digest of what was stored or loaded. */
  setResult(r: { bytes: number; sha256: string }): void;
}

/** A checkpoint save or load: span `checkpoint.save` / `checkpoint.load` with bytes and sha256, plus a sample
 *  of `dalle.checkpoint.duration`. */
export function traceCheckpoint<T>(
  op: 'save' | 'load',
  info: CheckpointSpanInfo,
  fn: (s: CheckpointSpan) => Promise<T>,
): Promise<T> {
  const t0 = performance.now();
  return withSpan(
    op === 'save' ? SPAN_NAMES.checkpointSave : SPAN_NAMES.checkpointLoad,
    {
      [ATTR.runId]: info.runId,
      [ATTR.stage]: info.stage,
      [ATTR.step]: info.step,
      [ATTR.checkpointOp]: op,
      ...(info.part !== undefined ? { [ATTR.checkpointPart]: info.part } : {}),
      ...(info.key !== undefined ? { [ATTR.checkpointKey]: info.key } : {}),
    },
    async (span) => {
      try {
        return await fn({
          span,
          setResult: (r) =>
            span.setAttributes({ [ATTR.checkpointBytes]: r.bytes, [ATTR.checkpointSha256]: r.sha256 }),
        });
      } finally {
        dalleMetrics().checkpointSeconds.record((performance.now() - t0) / 1000, {
          'dalle.run_id': info.runId,
          'dalle.stage': info.stage,
          'dalle.checkpoint.op': op,
        });
      }
    },
  );
}

/** The active span, for adding attributes from deep inside a call (no-op span when none). */
export function activeSpan(): Span {
  return trace.getSpan(context.active()) ?? trace.wrapSpanContext(INVALID_SPAN_CONTEXT);
}

type PartRef = { name: string; sha256: string; bytes: number };

/** What `traceCheckpointStore` wraps: store/'s CheckpointStore, described structurally (telemetry/ imports
 *  no other folder). */
export interface TraceablePartStore {
  partKey(runId: string, stage: string, step: number, part: string): string;
  putPart(runId: string, stage: string, step: number, part: string, bytes: Uint8Array): Promise<PartRef>;
  loadPart(
    manifest: { runId: string; stage: string; step: number; parts: PartRef[] },
    name: string,
  ): Promise<Uint8Array>;
}

/**
 * The same checkpoint store with a `checkpoint.save` span around every `putPart` and a `checkpoint.load`
 * span around every `loadPart` (bytes, sha256, key; `dalle.checkpoint.duration`). Wrap once where the
 * store is opened (the worker) and every activity's part I/O is traced; everything else passes through.
 */
export function traceCheckpointStore<T extends TraceablePartStore>(store: T): T {
  const putPart: TraceablePartStore['putPart'] = (runId, stage, step, part, bytes) =>
    traceCheckpoint(
      'save',
      { runId, stage, step, part, key: store.partKey(runId, stage, step, part) },
      async (s) => {
        const ref = await store.putPart(runId, stage, step, part, bytes);
        s.setResult(ref);
        return ref;
      },
    );
  const loadPart: TraceablePartStore['loadPart'] = (manifest, name) => {
    const { runId, stage, step } = manifest;
    return traceCheckpoint(
      'load',
      { runId, stage, step, part: name, key: store.partKey(runId, stage, step, name) },
      async (s) => {
        const bytes = await store.loadPart(manifest, name);
        // loadPart verified the bytes against the manifest: its sha256 is theirs.
        s.setResult({
          bytes: bytes.length,
          sha256: manifest.parts.find((p) => p.name === name)?.sha256 ?? '',
        });
        return bytes;
      },
    );
  };
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'putPart') return putPart;
      if (prop === 'loadPart') return loadPart;
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}
