// Temporal tracing through @temporalio/interceptors-opentelemetry (1.24, built for the OTel 1.x SDK that
// telemetry/ installs). The chain `dalle train` → trainDalle → trainStage → trainShard becomes one trace:
//   CLI span ─ StartWorkflow:trainDalle (client interceptor; traceparent into the workflow's headers)
//     └ RunWorkflow:trainDalle (workflow inbound interceptor, inside the isolate)
//        └ StartChildWorkflow:trainStage → RunWorkflow:trainStage (outbound → child headers)
//           └ StartActivity:trainShard (outbound → activity headers)
//              └ RunActivity:trainShard (activity inbound interceptor, on the worker's node side)
//                 └ collective.allReduce, checkpoint.save … (telemetry/spans.ts, same async context)
// Workflow spans are made inside the deterministic isolate and leave it through a sink
// (`makeWorkflowExporter`), which hands them to the span processor `initTelemetry` installed.
import { createRequire } from 'node:module';
import type {
  ClientInterceptors,
  Next,
  WorkflowClientInterceptor,
  WorkflowQueryInput,
  WorkflowSignalInput,
} from '@temporalio/client';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import {
  makeWorkflowExporter,
  OpenTelemetryActivityInboundInterceptor,
  OpenTelemetryActivityOutboundInterceptor,
  OpenTelemetryWorkflowClientInterceptor,
  type OpenTelemetrySinks,
} from '@temporalio/interceptors-opentelemetry';
import type { InjectedSinks, WorkerInterceptors } from '@temporalio/worker';
import type { Sinks } from '@temporalio/workflow';
import { dalleMetrics } from './metrics.ts';
import { getTracer } from './api.ts';
import { CurrentSpanProcessor, telemetryResource } from './setup.ts';

const require = createRequire(import.meta.url);

/** The workflow interceptor module (exports `interceptors`), bundled into the workflow isolate by the worker.
 *  Give it to `WorkerOptions.interceptors.workflowModules`, or to `bundleWorkflowCode({ workflowInterceptorModules })`
 *  when bundling ahead of time (a prebuilt `workflowBundle` ignores `workflowModules`). */
export const WORKFLOW_INTERCEPTOR_MODULES: readonly string[] = [
  require.resolve('@temporalio/interceptors-opentelemetry/lib/workflow-interceptors'),
];

/** Signals sent many times per run (rank 0 reports progress every second) are not traced, and neither are
 *  queries (`dalle train` polls `progress` every second): as spans they would bury a run's structure under
 *  thousands of identical children, or start a new trace per poll. */
export const UNTRACED_SIGNALS: readonly string[] = ['reportProgress'];

class DalleWorkflowClientInterceptor extends OpenTelemetryWorkflowClientInterceptor {
  override async query(
    input: WorkflowQueryInput,
    next: Next<WorkflowClientInterceptor, 'query'>,
  ): Promise<unknown> {
    return await next(input);
  }
  override async signal(
    input: WorkflowSignalInput,
    next: Next<WorkflowClientInterceptor, 'signal'>,
  ): Promise<void> {
    if (UNTRACED_SIGNALS.includes(input.signalName)) return await next(input);
    return await super.signal(input, next);
  }
}

/** Workflow-side spans of the untraced calls above arrive without a parent: drop them at the sink. */
function keepWorkflowSpan(span: ReadableSpan): boolean {
  if (span.name.startsWith('HandleQuery:')) return false;
  return !UNTRACED_SIGNALS.some((s) => span.name === `HandleSignal:${s}`);
}

/** Client interceptors for `new Client({ connection, interceptors: temporalClientInterceptors() })`:
 *  starting and signalling a workflow makes a span and carries its context in the headers. */
export function temporalClientInterceptors(): ClientInterceptors {
  return { workflow: [new DalleWorkflowClientInterceptor({ tracer: getTracer() })] };
}

/**
 * Metrics only a workflow knows (it decides relaunches), recorded through a sink so workflow code stays
 * deterministic: sinks run outside the isolate and not during replay, so a replayed relaunch is not counted
 * twice. In workflow code: `const { dalleMetrics } = proxySinks<DalleWorkflowSinks>();` then
 * `dalleMetrics.restart({ runId, stage })`.
 */
export interface DalleWorkflowSinks extends Sinks {
  dalleMetrics: {
    /** A segment is relaunched after a lost rank: `dalle.train.restarts` += 1. */
    restart(a: { runId: string; stage: 'dvae' | 'transformer' | 'rerank' }): void;
  };
}

export interface TemporalWorkerTelemetry {
  interceptors: WorkerInterceptors;
  sinks: InjectedSinks<OpenTelemetrySinks & DalleWorkflowSinks>;
}

/**
 * Spread into `Worker.create({ ...temporalWorkerOptions(), connection, taskQueue, workflowsPath, activities })`
 * (merge by hand if the worker has interceptors or sinks of its own). Installs the workflow interceptors
 * (module + span sink) and the activity inbound/outbound interceptors. Always safe to install: without an
 * exporter the workflow spans reach the sink and are dropped there. Call `initTelemetry` before this, so
 * workflow spans carry this process's resource (`service.name` = dalle-worker).
 */
export function temporalWorkerOptions(): TemporalWorkerTelemetry {
  return {
    interceptors: {
      workflowModules: [...WORKFLOW_INTERCEPTOR_MODULES],
      activity: [
        (ctx) => ({
          inbound: new OpenTelemetryActivityInboundInterceptor(ctx, { tracer: getTracer() }),
          outbound: new OpenTelemetryActivityOutboundInterceptor(ctx),
        }),
      ],
      client: temporalClientInterceptors(),
    },
    sinks: {
      exporter: makeWorkflowExporter(new CurrentSpanProcessor(keepWorkflowSpan), telemetryResource()),
      dalleMetrics: {
        restart: {
          fn: (_info, a) =>
            dalleMetrics().restarts.add(1, { 'dalle.run_id': a.runId, 'dalle.stage': a.stage }),
          callDuringReplay: false,
        },
      },
    },
  };
}
