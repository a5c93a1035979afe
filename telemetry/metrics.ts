// The metrics as typed instruments, so every caller records the same names, units and
// attribute keys. `dalleMetrics()` is cheap to call on every use: it caches the instruments per meter
// provider and rebuilds them after `initTelemetry`/`shutdownTelemetry` (the metrics API, unlike the trace
// API, has no proxy: an instrument made before `initTelemetry` would stay a no-op forever).
import type { Counter, Gauge, Histogram, ObservableResult, UpDownCounter } from '@opentelemetry/api';
import { getMeter, telemetryGeneration } from './api.ts';

/** Attributes of training metrics. */
export type TrainAttributes = {
  'dalle.run_id': string;
  'dalle.stage': 'dvae' | 'transformer' | 'rerank';
};

/** Attributes of one rank's all-reduce timings: the tag tells PowerSGD's P and Q from the dense buffer,
 *  the loss and checkpoint barriers. */
export type AllReduceAttributes = {
  'dalle.run_id': string;
  'dalle.rank': number;
  'dalle.allreduce.tag'?: string;
  'dalle.stage'?: 'dvae' | 'transformer' | 'rerank';
};

export type CheckpointAttributes = {
  'dalle.run_id': string;
  'dalle.stage': string;
  'dalle.checkpoint.op': 'save' | 'load';
};

/** Attributes of the quality measurements taken at checkpoints. */
export type QualityAttributes = TrainAttributes & {
  /** The validation set: 'seen', 'heldOut' or 'train' (see quality/validation.ts). */
  'dalle.quality.split': string;
};

export type SamplerAttributes = {
  /** e.g. 'Generate' */
  'rpc.method': string;
};

export type GenerateAttributes = SamplerAttributes & {
  /** gRPC status code of the finished call (0 = OK). */
  'rpc.grpc.status_code': number;
};

/** Bucket bounds (seconds) of the all-reduce and checkpoint histograms: milliseconds on a LAN to a minute
 *  for a 12B-parameter state over a slow link. */
export const SHORT_SECONDS_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
];
/** Bucket bounds (seconds) of the Generate latency histogram: sampling 256 image tokens autoregressively
 *  takes seconds on a GPU and minutes on a CPU, so the buckets run in multi-second steps up to 10 min. */
export const GENERATE_SECONDS_BUCKETS = [0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600];

export interface DalleMetrics {
  /** Global mean training loss of the latest step. Gauge. */
  readonly loss: Gauge<TrainAttributes>;
  /** Optimizer steps per second over the latest reporting window. Gauge, unit 1/s. */
  readonly stepsPerSecond: Gauge<TrainAttributes>;
  /** Gradient bytes before compression ÷ bytes sent, over a step's all-reduces (1 = uncompressed). Gauge. */
  readonly compressionRate: Gauge<TrainAttributes>;
  /** Wall time of one all-reduce on one rank. Histogram, seconds. */
  readonly allReduceSeconds: Histogram<AllReduceAttributes>;
  /** Wall time of one checkpoint save or load (one part, or a whole checkpoint). Histogram, seconds. */
  readonly checkpointSeconds: Histogram<CheckpointAttributes>;
  /** Segment relaunches after a lost rank. Counter. */
  readonly restarts: Counter<TrainAttributes>;
  /** Latency of a finished Generate call, server side. Histogram, seconds, multi-second buckets. */
  readonly generateSeconds: Histogram<GenerateAttributes>;
  /** Requests being served now. UpDownCounter (+1 on start, -1 on finish). */
  readonly inFlight: UpDownCounter<SamplerAttributes>;
  /** dVAE: distinct codes in the validation images' tokens. Gauge. */
  readonly codesUsed: Gauge<QualityAttributes>;
  /** dVAE: share of validation reconstructions judged right on all four attributes (shapes set). Gauge. */
  readonly reconstructionAccuracy: Gauge<QualityAttributes>;
  /** Transformer: caption information, nats per image token. Gauge. */
  readonly captionInformation: Gauge<QualityAttributes>;
  /** Transformer: share of plain samples judged right on all four attributes (shapes set). Gauge. */
  readonly sampleAccuracy: Gauge<QualityAttributes>;
}

/** Instrument names: the contract with dashboards. */
export const METRIC_NAMES = {
  loss: 'dalle.train.loss',
  stepsPerSecond: 'dalle.train.steps_per_second',
  compressionRate: 'dalle.collective.compression_rate',
  allReduceSeconds: 'dalle.collective.allreduce.duration',
  checkpointSeconds: 'dalle.checkpoint.duration',
  restarts: 'dalle.train.restarts',
  generateSeconds: 'dalle.generate.duration',
  /** observable: see observeQueueDepth */
  queueDepth: 'dalle.sampler.queue_depth',
  inFlight: 'dalle.sampler.requests_in_flight',
  codesUsed: 'dalle.quality.codes_used',
  reconstructionAccuracy: 'dalle.quality.reconstruction_accuracy',
  captionInformation: 'dalle.quality.caption_information',
  sampleAccuracy: 'dalle.quality.sample_accuracy',
} as const satisfies Record<keyof DalleMetrics | 'queueDepth', string>;

let cached: { generation: number; m: DalleMetrics } | undefined;

/** How each instrument is made: its kind, description, unit and (histograms) bucket bounds. */
interface InstrumentDef {
  kind: 'gauge' | 'counter' | 'upDownCounter' | 'histogram';
  description: string;
  unit: string;
  buckets?: number[];
}

const INSTRUMENTS: Record<keyof DalleMetrics, InstrumentDef> = {
  loss: { kind: 'gauge', description: 'Global mean training loss of the latest step', unit: '1' },
  stepsPerSecond: { kind: 'gauge', description: 'Optimizer steps per second', unit: '1/s' },
  compressionRate: {
    kind: 'gauge',
    description: 'Gradient bytes before compression divided by bytes sent, per step',
    unit: '1',
  },
  allReduceSeconds: {
    kind: 'histogram',
    description: 'Wall time of one all-reduce on one rank',
    unit: 's',
    buckets: SHORT_SECONDS_BUCKETS,
  },
  checkpointSeconds: {
    kind: 'histogram',
    description: 'Wall time of a checkpoint save or load',
    unit: 's',
    buckets: SHORT_SECONDS_BUCKETS,
  },
  restarts: { kind: 'counter', description: 'Segment relaunches after a lost rank', unit: '1' },
  generateSeconds: {
    kind: 'histogram',
    description: 'Latency of a Generate call, server side',
    unit: 's',
    buckets: GENERATE_SECONDS_BUCKETS,
  },
  inFlight: { kind: 'upDownCounter', description: 'Sampler requests being served', unit: '1' },
  codesUsed: { kind: 'gauge', description: 'dVAE codes in use on the validation images', unit: '1' },
  reconstructionAccuracy: {
    kind: 'gauge',
    description: 'Share of dVAE reconstructions of validation images right on all four attributes',
    unit: '1',
  },
  captionInformation: {
    kind: 'gauge',
    description: 'Image-token loss with another caption minus with the true caption',
    unit: 'nat',
  },
  sampleAccuracy: {
    kind: 'gauge',
    description: 'Share of plain samples right on all four attributes',
    unit: '1',
  },
};

function build(): DalleMetrics {
  const meter = getMeter();
  const make = (name: string, d: InstrumentDef) => {
    const opts = {
      description: d.description,
      unit: d.unit,
      ...(d.buckets ? { advice: { explicitBucketBoundaries: d.buckets } } : {}),
    };
    if (d.kind === 'gauge') return meter.createGauge(name, opts);
    if (d.kind === 'counter') return meter.createCounter(name, opts);
    if (d.kind === 'upDownCounter') return meter.createUpDownCounter(name, opts);
    return meter.createHistogram(name, opts);
  };
  // The table's kinds match DalleMetrics' instrument types (the compiler cannot tell a Gauge from a
  // Histogram, nor a Counter from an UpDownCounter: same shape), so the cast is the table's promise.
  return Object.fromEntries(
    Object.entries(INSTRUMENTS).map(([key, d]) => [key, make(METRIC_NAMES[key as keyof DalleMetrics], d)]),
  ) as unknown as DalleMetrics;
}

/** The typed instruments, bound to the current meter provider (no-ops when metrics are not exported). */
export function dalleMetrics(): DalleMetrics {
  const g = telemetryGeneration();
  if (!cached || cached.generation !== g) cached = { generation: g, m: build() };
  return cached.m;
}

/**
 * Reports the sampler's queue depth (`dalle.sampler.queue_depth`, a gauge) by asking `read` at every
 * export, so the scheduler needs no bookkeeping at each place a request enters or leaves its queue. Call
 * after `initTelemetry`; returns the unregister function.
 */
export function observeQueueDepth(
  read: () => number,
  attributes: SamplerAttributes = { 'rpc.method': 'Generate' },
): () => void {
  const gauge = getMeter().createObservableGauge<SamplerAttributes>(METRIC_NAMES.queueDepth, {
    description: 'Generate requests accepted and waiting for a generation slot',
    unit: '1',
  });
  const callback = (r: ObservableResult<SamplerAttributes>) => r.observe(read(), attributes);
  gauge.addCallback(callback);
  return () => gauge.removeCallback(callback);
}

/** One optimizer step's training gauges (call on one rank: the values are global). Non-finite values and a
 *  step that sent nothing are skipped rather than exported as NaN/∞. */
export function recordTrainStep(s: {
  runId: string;
  stage: 'dvae' | 'transformer' | 'rerank';
  /** Global mean loss of the step. */
  loss: number;
  stepsPerSec: number;
  /** This step's gradient bytes before compression and on the wire (PowerSGD's ReduceStats). */
  bytesRaw: number;
  bytesSent: number;
}): void {
  const m = dalleMetrics();
  const a: TrainAttributes = { 'dalle.run_id': s.runId, 'dalle.stage': s.stage };
  if (Number.isFinite(s.loss)) m.loss.record(s.loss, a);
  if (Number.isFinite(s.stepsPerSec) && s.stepsPerSec > 0) m.stepsPerSecond.record(s.stepsPerSec, a);
  if (s.bytesSent > 0) m.compressionRate.record(s.bytesRaw / s.bytesSent, a);
}
