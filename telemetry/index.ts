// telemetry/: OpenTelemetry for every dalle process. The public surface; import from here only.
//
//   initTelemetry({ serviceName: 'dalle-worker' })        first thing in a process
//   await shutdownTelemetry()                             last thing (flushes)
//   temporalClientInterceptors() / temporalWorkerOptions() Temporal tracing (one trace per run)
//   injectNatsHeaders / extractNatsContext                W3C traceparent in NATS headers
//   traceAllReduce / traceCheckpoint / withSpan           spans of the training runtime
//   grpcServerTracing() / grpcClientTracing()             gRPC spans + Generate metrics
//   dalleMetrics()                                        the typed instruments of the training and sampling metrics
//
// Libraries on a hot path that must not load the SDK (collective/ runs in many short rank processes) may
// import `./spans.ts` and `./metrics.ts` directly: they depend on @opentelemetry/api alone.
export {
  initTelemetry,
  shutdownTelemetry,
  flushTelemetry,
  currentTelemetry,
  getTracer,
  getMeter,
  SERVICE_NAMES,
  ATTR_RUN_ID,
  TelemetryArgumentError,
  type ServiceName,
  type Telemetry,
  type TelemetryOptions,
} from './setup.ts';
export {
  exportConfigFromEnv,
  TelemetryConfigError,
  type ExportConfig,
  type OtlpProtocol,
  type SignalExport,
} from './env.ts';
export {
  dalleMetrics,
  observeQueueDepth,
  recordTrainStep,
  METRIC_NAMES,
  GENERATE_SECONDS_BUCKETS,
  SHORT_SECONDS_BUCKETS,
  type DalleMetrics,
  type TrainAttributes,
  type QualityAttributes,
  type AllReduceAttributes,
  type CheckpointAttributes,
  type SamplerAttributes,
  type GenerateAttributes,
} from './metrics.ts';
export {
  withSpan,
  traceAllReduce,
  traceCheckpoint,
  traceCheckpointStore,
  activeSpan,
  ATTR,
  SPAN_NAMES,
  type AllReduceSpanInfo,
  type AllReduceResult,
  type AllReduceSpan,
  type CheckpointSpanInfo,
  type CheckpointSpan,
  type TraceablePartStore,
} from './spans.ts';
export { injectNatsHeaders, extractNatsContext, linkFromNatsHeaders, MessagingSpanKind } from './nats.ts';
export {
  temporalClientInterceptors,
  temporalWorkerOptions,
  WORKFLOW_INTERCEPTOR_MODULES,
  UNTRACED_SIGNALS,
  type TemporalWorkerTelemetry,
  type DalleWorkflowSinks,
} from './temporal.ts';
export {
  grpcServerTracing,
  grpcClientTracing,
  injectGrpcMetadata,
  extractGrpcContext,
  generateRequestAttributes,
  GENERATE_ATTR,
  type GrpcTracingOptions,
  type RequestAttributes,
} from './grpc.ts';
