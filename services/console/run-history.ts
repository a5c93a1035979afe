// What a run's root workflow history says that no query does: the spec it was started with, the trace its
// start belongs to, and the timeline of its stages, failures and resumes (the stage events trainStage
// signals to the root, each with the server's timestamp).
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { RunSpec } from '../../config/index.ts';
import { stageEventSignal, type StageEvent } from '../../contract/index.ts';
import type { RunStart as RunStartJson, TimelineEntry } from './api-types.ts';

export type { TimelineEntry };

type HistoryEvent = temporal.api.history.v1.IHistoryEvent;
type Payload = temporal.api.common.v1.IPayload;

/** The header the Temporal OpenTelemetry interceptors carry the caller's trace context in. */
const TRACE_HEADER = '_tracer-data';

export interface RunStart extends Omit<RunStartJson, 'spec'> {
  spec: RunSpec | null;
}

function timestampMs(ts: { seconds?: unknown; nanos?: number | null } | null | undefined): number {
  if (!ts) return 0;
  return Number(String(ts.seconds ?? 0)) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);
}

function decode(p: Payload | undefined | null): unknown {
  if (!p) return undefined;
  try {
    return defaultPayloadConverter.fromPayload(
      p as Parameters<typeof defaultPayloadConverter.fromPayload>[0],
    );
  } catch {
    return undefined;
  }
}

async function events(
  client: Client,
  workflowId: string,
  runId: string,
  pageSize = 0,
): Promise<HistoryEvent[]> {
  const out: HistoryEvent[] = [];
  let nextPageToken: Uint8Array | undefined;
  do {
    const r = await client.workflowService.getWorkflowExecutionHistory({
      namespace: client.options.namespace,
      execution: { workflowId, runId },
      maximumPageSize: pageSize,
      nextPageToken,
    });
    out.push(...(r.history?.events ?? []));
    nextPageToken = r.nextPageToken?.length ? r.nextPageToken : undefined;
  } while (nextPageToken && pageSize === 0);
  return out;
}

/** The run's spec and trace id, from its first history event. */
export async function readRunStart(client: Client, workflowId: string, runId: string): Promise<RunStart> {
  const [first] = await events(client, workflowId, runId, 1);
  const attrs = first?.workflowExecutionStartedEventAttributes;
  const input = decode(attrs?.input?.payloads?.[0]) as { spec?: unknown } | undefined;
  const spec = RunSpec.safeParse(input?.spec);
  const carrier = decode(attrs?.header?.fields?.[TRACE_HEADER]) as { traceparent?: string } | undefined;
  const traceId = /^[0-9a-f]{2}-([0-9a-f]{32})-/.exec(carrier?.traceparent ?? '')?.[1] ?? null;
  return {
    spec: spec.success ? spec.data : null,
    traceId,
    startedAt: new Date(timestampMs(first?.eventTime)).toISOString(),
  };
}

/** Stage starts, failed segments, resumes, checkpoint fallbacks and the end, oldest first. */
export async function readTimeline(
  client: Client,
  workflowId: string,
  runId: string,
): Promise<TimelineEntry[]> {
  const out: TimelineEntry[] = [];
  for (const e of await events(client, workflowId, runId)) {
    const at = new Date(timestampMs(e.eventTime)).toISOString();
    const child = e.startChildWorkflowExecutionInitiatedEventAttributes;
    if (child) {
      const stage = child.workflowId?.slice(workflowId.length + 1) ?? '';
      out.push({ at, kind: 'stage', stage, message: `stage ${stage} started` });
      continue;
    }
    const sig = e.workflowExecutionSignaledEventAttributes;
    if (sig?.signalName === stageEventSignal.name) {
      const s = decode(sig.input?.payloads?.[0]) as StageEvent | undefined;
      if (!s) continue;
      const message = s.message ?? '';
      if (s.restarts !== undefined)
        out.push({ at, kind: 'restart', stage: s.stage, message, restarts: s.restarts });
      else if (s.resumedFrom !== undefined)
        out.push({ at, kind: 'resume', stage: s.stage, message, fromStep: s.resumedFrom });
      else if (message.startsWith('checkpoint fallback'))
        out.push({ at, kind: 'fallback', stage: s.stage, message });
      continue;
    }
    if (e.workflowExecutionCompletedEventAttributes)
      out.push({ at, kind: 'done', stage: 'done', message: 'run completed' });
    const failed = e.workflowExecutionFailedEventAttributes;
    if (failed)
      out.push({ at, kind: 'done', stage: 'done', message: `run failed: ${failed.failure?.message ?? ''}` });
    const terminated = e.workflowExecutionTerminatedEventAttributes;
    if (terminated)
      out.push({ at, kind: 'done', stage: 'done', message: `run terminated: ${terminated.reason ?? ''}` });
  }
  return out;
}
