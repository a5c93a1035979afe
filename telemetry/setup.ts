// Process-wide OpenTelemetry setup. Each process (`dalle-cli`, `dalle-worker`, `dalle-sampler`) calls
// `initTelemetry` first and `shutdownTelemetry` last. Versions: the OpenTelemetry JS 1.x SDK line (api 1.9,
// SDK 1.30.1, OTLP exporters 0.57.2) — see telemetry/README.md for why not 2.x or the newest line.
//
// What is always installed, exporting or not: the W3C trace-context propagator and the AsyncLocalStorage
// context manager, so a traceparent that arrives (Temporal headers, NATS headers, gRPC metadata) is carried
// on to whatever this process calls next. What is installed only when the OTEL_EXPORTER_OTLP_* variables ask
// for it: a tracer provider with a batching OTLP/HTTP exporter, and a meter provider with a periodic one.
// Without them the API's no-op tracer and meter stay in place: no span is recorded, no socket is opened.
import {
  context,
  diag,
  DiagConsoleLogger,
  DiagLogLevel,
  metrics,
  propagation,
  trace,
  type Attributes,
  type Context,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator, CompositePropagator, W3CBaggagePropagator } from '@opentelemetry/core';
import { OTLPMetricExporter as JsonMetricExporter } from '@opentelemetry/exporter-metrics-otlp-http';
import { OTLPMetricExporter as ProtoMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { OTLPTraceExporter as JsonTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as ProtoTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { envDetectorSync, Resource } from '@opentelemetry/resources';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import {
  BatchSpanProcessor,
  type ReadableSpan,
  type Span,
  type SpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';
import { ATTR_SERVICE_NAME, ATTR_SERVICE_VERSION } from '@opentelemetry/semantic-conventions';
import { hostname } from 'node:os';
import { ATTR_RUN_ID, bumpTelemetryGeneration, VERSION } from './api.ts';
import { exportConfigFromEnv, type ExportConfig } from './env.ts';

export { ATTR_RUN_ID, getMeter, getTracer, INSTRUMENTATION_SCOPE, telemetryGeneration } from './api.ts';

export const SERVICE_NAMES = ['dalle-cli', 'dalle-worker', 'dalle-sampler'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

export interface TelemetryOptions {
  serviceName: ServiceName;
  /** The run this process works for, when it has exactly one (the CLI's `train`): resource `dalle.run_id`. */
  runId?: string;
  /** Extra resource attributes (override the environment's OTEL_RESOURCE_ATTRIBUTES). */
  attributes?: Attributes;
  /** Defaults to process.env; tests pass their own. */
  env?: NodeJS.ProcessEnv;
}

export interface Telemetry {
  /** The service name this process reports under (the first `initTelemetry` call's). */
  readonly serviceName: ServiceName;
  readonly resource: Resource;
  /** What is exported; both false when no OTEL_EXPORTER_OTLP_* endpoint is set. */
  readonly exporting: { traces: boolean; metrics: boolean };
  readonly config: ExportConfig;
}

/** A bad argument to a telemetry function; the field and the accepted values are named. */
export class TelemetryArgumentError extends Error {
  override name = 'TelemetryArgumentError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly expected: string,
  ) {
    super(`telemetry: ${field} = ${JSON.stringify(value)} is invalid: expected ${expected}`);
  }
}

interface State extends Telemetry {
  tracerProvider?: NodeTracerProvider;
  meterProvider?: MeterProvider;
  spanProcessor?: SpanProcessor;
}

let state: State | undefined;

function logLevel(env: NodeJS.ProcessEnv): DiagLogLevel | undefined {
  const v = env.OTEL_LOG_LEVEL?.trim().toUpperCase();
  if (!v) return undefined;
  const level = (DiagLogLevel as unknown as Record<string, number>)[v];
  if (typeof level !== 'number') {
    throw new TelemetryArgumentError(
      'OTEL_LOG_LEVEL',
      env.OTEL_LOG_LEVEL,
      'NONE, ERROR, WARN, INFO, DEBUG, VERBOSE or ALL',
    );
  }
  return level;
}

function buildResource(opts: TelemetryOptions, env: NodeJS.ProcessEnv): Resource {
  // OTEL_RESOURCE_ATTRIBUTES is read from `env` (not only process.env) so tests can pass their own.
  const saved = process.env.OTEL_RESOURCE_ATTRIBUTES;
  let fromEnv: Resource;
  try {
    if (env.OTEL_RESOURCE_ATTRIBUTES !== undefined)
      process.env.OTEL_RESOURCE_ATTRIBUTES = env.OTEL_RESOURCE_ATTRIBUTES;
    else delete process.env.OTEL_RESOURCE_ATTRIBUTES;
    fromEnv = new Resource(envDetectorSync.detect().attributes);
  } finally {
    if (saved === undefined) delete process.env.OTEL_RESOURCE_ATTRIBUTES;
    else process.env.OTEL_RESOURCE_ATTRIBUTES = saved;
  }
  return Resource.default()
    .merge(fromEnv)
    .merge(
      new Resource({
        [ATTR_SERVICE_NAME]: opts.serviceName,
        [ATTR_SERVICE_VERSION]: VERSION,
        'service.namespace': 'dalle',
        'service.instance.id': `${hostname()}-${process.pid}`,
        'host.name': hostname(),
        'process.pid': process.pid,
        ...(opts.runId ? { [ATTR_RUN_ID]: opts.runId } : {}),
        ...(opts.attributes ?? {}),
      }),
    );
}

/**
 * Sets up OpenTelemetry for this process; call it first, before creating Temporal clients/workers, NATS
 * connections or gRPC servers. Exports OTLP over HTTP only when the standard OTEL_EXPORTER_OTLP_* variables
 * name an endpoint (see telemetry/env.ts); otherwise nothing is exported and nothing can fail.
 * Idempotent: a later call returns the first call's handle (one process, one service name).
 * Throws TelemetryConfigError when an OTEL_* variable holds a value it cannot honour.
 */
export function initTelemetry(opts: TelemetryOptions): Telemetry {
  if (!SERVICE_NAMES.includes(opts?.serviceName)) {
    throw new TelemetryArgumentError(
      'serviceName',
      opts?.serviceName,
      SERVICE_NAMES.map((s) => `'${s}'`).join(' | '),
    );
  }
  if (opts.runId !== undefined && (typeof opts.runId !== 'string' || opts.runId === '')) {
    throw new TelemetryArgumentError('runId', opts.runId, 'a non-empty string');
  }
  if (state) {
    if (state.serviceName !== opts.serviceName) {
      diag.warn(
        `initTelemetry: already initialised as ${state.serviceName}; keeping it (asked for ${opts.serviceName})`,
      );
    }
    return state;
  }
  const env = opts.env ?? process.env;
  const config = exportConfigFromEnv(env);
  const level = logLevel(env);
  if (level !== undefined) diag.setLogger(new DiagConsoleLogger(), level);
  else if (config.traces || config.metrics) diag.setLogger(new DiagConsoleLogger(), DiagLogLevel.ERROR); // failed exports say so
  const resource = buildResource(opts, env);

  // Always: propagation and in-process context, so traceparents pass through even a non-exporting process.
  const contextManager = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(
    new CompositePropagator({ propagators: [new W3CTraceContextPropagator(), new W3CBaggagePropagator()] }),
  );

  let tracerProvider: NodeTracerProvider | undefined;
  let spanProcessor: SpanProcessor | undefined;
  if (config.traces) {
    const exporter =
      config.traces.protocol === 'http/json'
        ? new JsonTraceExporter({ url: config.traces.url })
        : new ProtoTraceExporter({ url: config.traces.url });
    spanProcessor = new BatchSpanProcessor(exporter);
    tracerProvider = new NodeTracerProvider({ resource, spanProcessors: [spanProcessor] });
    trace.setGlobalTracerProvider(tracerProvider);
  }

  let meterProvider: MeterProvider | undefined;
  if (config.metrics) {
    const exporter =
      config.metrics.protocol === 'http/json'
        ? new JsonMetricExporter({ url: config.metrics.url })
        : new ProtoMetricExporter({ url: config.metrics.url });
    const interval = config.metrics.intervalMs;
    meterProvider = new MeterProvider({
      resource,
      readers: [
        new PeriodicExportingMetricReader({
          exporter,
          exportIntervalMillis: interval,
          exportTimeoutMillis: Math.min(30_000, interval),
        }),
      ],
    });
    metrics.setGlobalMeterProvider(meterProvider);
  }

  state = {
    serviceName: opts.serviceName,
    resource,
    config,
    exporting: { traces: !!tracerProvider, metrics: !!meterProvider },
    tracerProvider,
    meterProvider,
    spanProcessor,
  };
  bumpTelemetryGeneration();
  return state;
}

/**
 * Flushes and stops exporting, then restores the API's no-op globals (so a test can init again).
 * Safe to call when `initTelemetry` was never called, and more than once. Never throws: a collector that
 * is down must not turn a clean exit into a failure (the diag logger reports it).
 */
export async function shutdownTelemetry(): Promise<void> {
  const s = state;
  if (!s) return;
  state = undefined;
  bumpTelemetryGeneration();
  const results = await Promise.allSettled([s.tracerProvider?.shutdown(), s.meterProvider?.shutdown()]);
  for (const r of results) if (r.status === 'rejected') diag.error('telemetry shutdown failed', r.reason);
  trace.disable();
  metrics.disable();
  propagation.disable();
  context.disable();
  diag.disable();
}

/** Pushes what is buffered now (e.g. before a process is killed on purpose). */
export async function flushTelemetry(): Promise<void> {
  await Promise.allSettled([state?.tracerProvider?.forceFlush(), state?.meterProvider?.forceFlush()]);
}

/** The handle of the current `initTelemetry`, if any. */
export function currentTelemetry(): Telemetry | undefined {
  return state;
}

/** The resource spans recorded outside the SDK (Temporal workflow spans) are stamped with. */
export function telemetryResource(): Resource {
  return state?.resource ?? new Resource({ [ATTR_SERVICE_NAME]: 'dalle-worker' });
}

/** Forwards finished spans to whatever processor the current `initTelemetry` installed, or drops them. Late
 *  binding lets a Temporal worker be given its workflow-span sink before or after telemetry starts. */
export class CurrentSpanProcessor implements SpanProcessor {
  constructor(private readonly keep: (span: ReadableSpan) => boolean = () => true) {}
  onStart(_span: Span, _parentContext: Context): void {}
  onEnd(span: ReadableSpan): void {
    if (state?.spanProcessor && this.keep(span)) state.spanProcessor.onEnd(span);
  }
  async forceFlush(): Promise<void> {
    await state?.spanProcessor?.forceFlush();
  }
  async shutdown(): Promise<void> {}
}
