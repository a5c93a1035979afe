// The gRPC sampling service: dalle.v1.Sampler + grpc.health.v1.Health + server reflection.
//
// Handlers are thin: `handleGenerate` wires a call's cancellation and deadline to an AbortSignal, hands
// the request to `generate` (a plain function of request, sink and signal), and maps whatever it throws
// to a status in one place (errors.ts). `onRequest` is the one seam where every request starts and ends
// (telemetry hangs its spans there).
import * as grpc from '@grpc/grpc-js';
import { trace } from '@opentelemetry/api';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import {
  SamplerService as SamplerServiceDefinition,
  type GenerateEvent,
  type GenerateRequest,
  type ListModelsRequest,
  type ListModelsResponse,
  type ModelInfo,
  type Timings,
} from '../../proto/gen/dalle/v1/sampler.ts';
import { samplerServerCredentials, samplerTokenCheck } from '../../security/grpc.ts';
import type { SamplerServerSecurity } from '../../security/settings.ts';
import type { ModelStore } from '../../store/index.ts';
import { GENERATE_ATTR } from '../../telemetry/grpc.ts';
import type { ModelFacts, ModelLoader, SamplingModel } from './engine.ts';
import { DrainingError, GenerationStoppedError, toStatus } from './errors.ts';
import { EventWriter, type GenerateSink } from './event-writer.ts';
import { ModelRegistry } from './model-registry.ts';
import { encodePng } from './png.ts';
import {
  checkAgainstModel,
  imageSeed,
  requestRowSpecs,
  validateRequest,
  type ValidRequest,
} from './request.ts';
import { keepBest, type KeptImage } from './candidates.ts';
import {
  Scheduler,
  type Job,
  type Reservation,
  type SampledImage,
  type SchedulerObserver,
  type SchedulerOptions,
} from './scheduler.ts';
import { packageFile } from '../../config/package-root.ts';

export const SERVICE_NAME = 'dalle.v1.Sampler';
export const DEFAULT_ADDRESS = '127.0.0.1:50051';
/** GenerateRequest.candidates a sampler allows unless told otherwise (the paper saw gains flatten by 32). */
export const DEFAULT_MAX_CANDIDATES = 64;

/** Channel options of the server: room for image payloads, keepalive through load balancers, and
 *  connection ageing so a balancer can spread long-lived clients over new replicas. */
export const serverChannelOptions: grpc.ChannelOptions = {
  // An event carries one PNG (a 256² RGB image is < 200 KiB); 32 MiB leaves room for much larger models.
  'grpc.max_send_message_length': 32 * 1024 * 1024,
  // Requests are a caption and a few numbers.
  'grpc.max_receive_message_length': 1024 * 1024,
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_connection_age_ms': 30 * 60_000,
  // A request running when the connection ages out may finish.
  'grpc.max_connection_age_grace_ms': 10 * 60_000,
};

/** What a finished (or failed) request reports to `onRequest`'s end callback. */
export interface RequestOutcome {
  code: grpc.status;
  details?: string;
  model?: { name: string; version: number };
  images?: number;
  timings?: Timings;
}

export interface RequestStart {
  method: 'Generate' | 'ListModels';
  request: GenerateRequest | ListModelsRequest;
  metadata: grpc.Metadata;
  peer: string;
}

export interface SamplerServiceOptions {
  store: ModelStore;
  /** The model an empty request name means, watched for new versions (default `dalle`). */
  defaultModel?: string;
  /** Bundle bytes → SamplingModel (default: the tfjs engine). */
  loader?: ModelLoader;
  scheduler?: Partial<SchedulerOptions>;
  /** Minimum milliseconds between two progress events of one call (0: every token step). */
  progressIntervalMs?: number;
  /** GenerateRequest.candidates at most this (default 64). */
  maxCandidates?: number;
  maxExtraModels?: number;
  /** Sees every forward pass (metrics, tests). */
  observer?: SchedulerObserver;
  /** Called when a request arrives; the function it returns is called once when the request ends. */
  onRequest?: (start: RequestStart) => ((outcome: RequestOutcome) => void) | void;
  log?: (level: 'info' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** grpc-js server interceptors (e.g. telemetry's `grpcServerTracing()`). */
  interceptors?: grpc.ServerInterceptor[];
  /** TLS (optionally mutual) and a bearer token (the CLI passes DALLE_SAMPLER_*); default: plaintext, open. */
  security?: SamplerServerSecurity;
}

export interface GenerateSummary {
  model: { name: string; version: number };
  images: number;
  /** Candidates per image, the guidance scale, and the forward-pass rows the request took. */
  candidates: number;
  guidanceScale: number;
  rows: number;
  /** Image tokens per image (grid²) and the caption's text tokens. */
  imageTokens: number;
  textTokens: number;
  timings: Timings;
}

const protoRoot = packageFile('proto/');

/** Reflection serves dalle.v1 only. grpc.health.v1 stays out: proto-loader names the map entry of its
 *  HealthListResponse `Statuses` instead of `StatusesEntry`, and strict clients (buf curl) then discard
 *  the whole file. Health clients know its schema anyway (`buf curl --schema <health.proto dir>`). */
function loadReflectionDefinitions(): protoLoader.PackageDefinition {
  return protoLoader.loadSync(['dalle/v1/sampler.proto'], {
    includeDirs: [protoRoot],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
}

/** Folder holding `health/v1/health.proto` (for `buf curl --schema`). */
export const healthProtoDir = healthProtoPath.slice(0, healthProtoPath.lastIndexOf('/health/v1/'));

export class SamplerService {
  readonly scheduler: Scheduler;
  readonly registry: ModelRegistry;
  readonly health: HealthImplementation;
  readonly grpcServer: grpc.Server;
  /** Handler promises still running (Generate and ListModels). */
  private readonly inflight = new Set<Promise<unknown>>();
  private draining = false;
  /** False while the model store's connection is down (health NOT_SERVING: new versions cannot arrive). */
  private storeConnected = true;
  private closing: Promise<void> | undefined;
  private readonly progressIntervalMs: number;
  private readonly maxCandidates: number;
  private readonly log: NonNullable<SamplerServiceOptions['log']>;

  constructor(private readonly opts: SamplerServiceOptions) {
    this.log =
      opts.log ??
      ((level, msg, fields) =>
        (level === 'error' ? console.error : console.log)(JSON.stringify({ level, msg, ...fields })));
    this.progressIntervalMs = opts.progressIntervalMs ?? 50;
    this.maxCandidates = opts.maxCandidates ?? DEFAULT_MAX_CANDIDATES;
    if (!(Number.isInteger(this.maxCandidates) && this.maxCandidates >= 1))
      throw new RangeError(`sampler maxCandidates must be a positive integer, got ${this.maxCandidates}`);
    this.scheduler = new Scheduler(opts.scheduler, opts.observer);
    this.health = new HealthImplementation({ '': 'NOT_SERVING', [SERVICE_NAME]: 'NOT_SERVING' });
    this.registry = new ModelRegistry({
      store: opts.store,
      loader: opts.loader ?? (async (b, v) => (await import('./tf-engine.ts')).loadBundleModel(b, v)),
      defaultModel: opts.defaultModel ?? 'dalle',
      maxExtraModels: opts.maxExtraModels,
      log: this.log,
      onServing: (name) => {
        if (name === this.registry.defaultModel) this.updateHealth();
      },
    });
    // The token check runs first: an unauthenticated call reaches no other interceptor and no handler.
    this.grpcServer = new grpc.Server({
      ...serverChannelOptions,
      interceptors: [samplerTokenCheck(opts.security?.token), ...(opts.interceptors ?? [])],
    });
    this.grpcServer.addService(SamplerServiceDefinition, {
      generate: (call: grpc.ServerWritableStream<GenerateRequest, GenerateEvent>) =>
        this.handleGenerate(call),
      listModels: (
        call: grpc.ServerUnaryCall<ListModelsRequest, ListModelsResponse>,
        cb: grpc.sendUnaryData<ListModelsResponse>,
      ) => this.handleListModels(call, cb),
    });
    this.health.addToServer(this.grpcServer);
    new ReflectionService(loadReflectionDefinitions()).addToServer(this.grpcServer);
  }

  /** Binds `address` (host:port; port 0 picks one), starts watching the default model; returns the port. */
  async listen(address: string = process.env.DALLE_SAMPLER_ADDRESS || DEFAULT_ADDRESS): Promise<number> {
    const port = await new Promise<number>((resolve, reject) =>
      this.grpcServer.bindAsync(address, samplerServerCredentials(this.opts.security ?? {}), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    await this.registry.start();
    this.log('info', 'sampler listening', { address, port, model: this.registry.defaultModel });
    return port;
  }

  /** SERVING only with the default model loaded, the store reachable and no drain in progress. */
  private updateHealth(): void {
    const ok =
      !this.draining && this.storeConnected && !!this.registry.servingFacts(this.registry.defaultModel);
    this.health.setStatus('', ok ? 'SERVING' : 'NOT_SERVING');
    this.health.setStatus(SERVICE_NAME, ok ? 'SERVING' : 'NOT_SERVING');
  }

  /** The model store's connection went down (false) or came back (true). While it is down the service
   *  keeps answering from the models it holds but reports NOT_SERVING (it cannot see new versions); when
   *  it returns, the registry watches afresh and catches up with the newest version. */
  setStoreConnected(connected: boolean): void {
    if (this.storeConnected === connected || this.closing) return;
    this.storeConnected = connected;
    this.log(
      connected ? 'info' : 'error',
      connected ? 'model store reachable again' : 'model store unreachable',
      {},
    );
    this.updateHealth();
    if (connected) void this.resync(1000);
  }

  /** Re-watches until it works (a server that just came back may still be recovering its streams). */
  private async resync(retryMs: number): Promise<void> {
    if (!this.storeConnected || this.closing) return;
    try {
      await this.registry.resync();
    } catch (e) {
      this.log('error', 'model watch could not resync; retrying', { error: (e as Error).message, retryMs });
      const t = setTimeout(() => void this.resync(Math.min(retryMs * 2, 30_000)), retryMs);
      t.unref();
    }
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p)).catch(() => {});
    return p;
  }

  // ---- Generate --------------------------------------------------------------------------------------

  private handleGenerate(call: grpc.ServerWritableStream<GenerateRequest, GenerateEvent>): void {
    const end = this.opts.onRequest?.({
      method: 'Generate',
      request: call.request,
      metadata: call.metadata,
      peer: call.getPeer(),
    });
    // The server span of telemetry's interceptor, when there is one (a no-op span otherwise).
    const span = trace.getActiveSpan();
    const stop = new AbortController();
    const raw = call.getDeadline();
    const deadline = raw instanceof Date ? raw.getTime() : raw;
    // grpc-js also fails the call at the deadline; this timer makes sure the *generation* stops then.
    const timer = Number.isFinite(deadline)
      ? setTimeout(() => stop.abort('deadline'), Math.max(0, deadline - Date.now()))
      : undefined;
    call.on('cancelled', () => stop.abort(Date.now() >= deadline - 1 ? 'deadline' : 'cancelled'));
    const writer = new EventWriter(call, this.progressIntervalMs);
    const done = this.generate(call.request, writer, stop.signal).then(
      (summary) => {
        writer.end();
        span?.setAttributes({
          [GENERATE_ATTR.modelName]: summary.model.name,
          [GENERATE_ATTR.modelVersion]: summary.model.version,
          [GENERATE_ATTR.numImages]: summary.images,
          [GENERATE_ATTR.imageTokens]: summary.imageTokens,
          [GENERATE_ATTR.textTokens]: summary.textTokens,
          [GENERATE_ATTR.candidates]: summary.candidates,
          [GENERATE_ATTR.guidanceScale]: summary.guidanceScale,
          [GENERATE_ATTR.rows]: summary.rows,
          [GENERATE_ATTR.rerankMs]: summary.timings.rerankMs,
          'dalle.generate.shared_steps': summary.timings.sharedSteps,
          'dalle.generate.queue_ms': summary.timings.queueMs,
        });
        end?.({
          code: grpc.status.OK,
          model: summary.model,
          images: summary.images,
          timings: summary.timings,
        });
      },
      (err: unknown) => {
        writer.close();
        const st = toStatus(err);
        if (st.code === grpc.status.INTERNAL)
          this.log('error', 'Generate failed', {
            error: err instanceof Error ? (err.stack ?? err.message) : String(err),
          });
        if (!call.cancelled) call.emit('error', st);
        end?.({ code: st.code, details: st.details });
      },
    );
    void this.track(done.finally(() => clearTimeout(timer)));
  }

  /**
   * One Generate request, independent of gRPC: validate, lease the model, queue the rows, stream
   * progress, PNG-encode and send each image, then Done. Throws the errors of errors.ts.
   */
  async generate(raw: GenerateRequest, out: GenerateSink, signal: AbortSignal): Promise<GenerateSummary> {
    const t0 = performance.now();
    if (this.draining) throw new DrainingError();
    const req = validateRequest(raw);
    // Admitted (or refused) before anything loads: a pinned version nobody holds costs a load.
    const place = this.scheduler.reserve();
    let lease;
    try {
      lease = await this.registry.acquire(req.modelName, req.modelVersion);
    } catch (e) {
      place.release();
      throw e;
    }
    try {
      const model = lease.model;
      checkAgainstModel(req, model.facts, {
        maxCandidates: this.maxCandidates,
        maxBatchRows: this.scheduler.options.maxBatchRows,
      });
      if (signal.aborted) throw stoppedBy(signal);
      const text = model.encodePrompt(req.prompt);
      const { job, samples } = await this.sample(model, req, text, place, out, signal);
      const tDecoded = performance.now();
      const { kept, ms: rerankMs } = keepBest(model, text, samples, req.candidates);
      await sendImages(kept, req, model.facts, out, signal);
      const summary = summarize(req, model.facts, text, job, { t0, tDecoded, rerankMs }, kept.length);
      await out.send({ event: { $case: 'done', value: { model: summary.model, timings: summary.timings } } });
      return summary;
    } finally {
      place.release(); // a no-op once the job took the place over
      lease.release();
    }
  }

  /** Queues the request's rows on the scheduler (taking over `place`) and waits for its samples, streaming
   *  the queue position and the tokens done; the signal cancels the job. */
  private async sample(
    model: SamplingModel,
    req: ValidRequest,
    text: Int32Array,
    place: Reservation,
    out: GenerateSink,
    signal: AbortSignal,
  ): Promise<{ job: Job; samples: SampledImage[] }> {
    const total = model.facts.grid * model.facts.grid;
    // Rows move in lockstep: every returned image has the same tokens done.
    const perImage = (done: number) => Array.from({ length: req.numImages }, () => done);
    const job = this.scheduler.submit(
      model,
      requestRowSpecs(req, text),
      {
        onQueued: (position) =>
          out.progress({ tokensDone: perImage(0), tokensTotal: total, queuePosition: position }, true),
        onProgress: (done) =>
          out.progress(
            { tokensDone: perImage(done[0] ?? 0), tokensTotal: total, queuePosition: 0 },
            done[0] === total,
          ),
      },
      place,
    );
    const onAbort = () => job.cancel(signal.reason as GenerationStoppedError['reason']);
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) onAbort();
    try {
      return { job, samples: await job.result };
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  // ---- ListModels ------------------------------------------------------------------------------------

  private handleListModels(
    call: grpc.ServerUnaryCall<ListModelsRequest, ListModelsResponse>,
    cb: grpc.sendUnaryData<ListModelsResponse>,
  ): void {
    const end = this.opts.onRequest?.({
      method: 'ListModels',
      request: call.request,
      metadata: call.metadata,
      peer: call.getPeer(),
    });
    void this.track(
      this.listModels().then(
        (res) => {
          cb(null, res);
          end?.({ code: grpc.status.OK });
        },
        (err: unknown) => {
          const st = toStatus(err);
          cb(st);
          end?.({ code: st.code, details: st.details });
        },
      ),
    );
  }

  /** Every model name in the store with its latest version, plus what this server holds. */
  async listModels(): Promise<ListModelsResponse> {
    const store = this.opts.store;
    const names = new Set(await store.names());
    names.add(this.registry.defaultModel);
    const models: ModelInfo[] = [];
    for (const name of [...names].sort()) {
      // One corrupt record must not hide every other model: that one is listed as if unpublished.
      const latest = await store.latest(name).catch((e: Error) => {
        this.log('error', 'unusable latest record; listing the model without it', {
          model: name,
          error: e.message,
        });
        return undefined;
      });
      const serving = this.registry.servingFacts(name);
      const loaded = this.registry.loadedVersions(name);
      if (!latest && loaded.length === 0) continue;
      const facts = serving?.version === latest?.version ? serving : undefined;
      models.push({
        name,
        latestVersion: latest?.version ?? 0,
        loadedVersions: loaded,
        servingVersion: serving?.version ?? 0,
        createdAt: latest?.createdAt ?? '',
        resolution: facts?.resolution ?? 0,
        grid: facts?.grid ?? 0,
        preset: facts?.preset ?? (typeof latest?.meta.preset === 'string' ? latest.meta.preset : ''),
        reranker: facts?.reranker ?? false,
      });
    }
    return { models, defaultModel: this.registry.defaultModel };
  }

  // ---- shutdown --------------------------------------------------------------------------------------

  /**
   * Graceful shutdown: health goes NOT_SERVING (a balancer stops routing here), new Generate calls get
   * UNAVAILABLE, queued and running requests finish. After `graceMs` what is left is stopped
   * (UNAVAILABLE) and the server closes.
   */
  shutdown(graceMs = 30_000): Promise<void> {
    this.closing ??= (async () => {
      this.draining = true;
      this.updateHealth();
      this.log('info', 'sampler draining', {
        active: this.scheduler.active,
        queued: this.scheduler.queued,
        graceMs,
      });
      const idle = Promise.all([this.scheduler.drain(), Promise.allSettled([...this.inflight])]).then(
        () => true,
      );
      let timer: NodeJS.Timeout | undefined;
      const drained = await Promise.race([
        idle,
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), graceMs))),
      ]);
      clearTimeout(timer);
      if (!drained) {
        this.log('info', 'drain timed out; stopping what is left', {
          active: this.scheduler.active,
          queued: this.scheduler.queued,
        });
        this.scheduler.stopAll('shutdown');
        await Promise.allSettled([...this.inflight]);
      }
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          this.grpcServer.forceShutdown();
          resolve();
        }, 2_000);
        this.grpcServer.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
      await this.registry.close();
      this.log('info', 'sampler stopped', {});
    })();
    return this.closing;
  }
}

/** The error for a request whose caller went away or whose deadline passed. */
function stoppedBy(signal: AbortSignal): GenerationStoppedError {
  return new GenerationStoppedError(signal.reason as GenerationStoppedError['reason'], 0);
}

/** PNG-encodes the kept images and sends each as an `image` event, unless the request stopped. */
async function sendImages(
  kept: KeptImage[],
  req: ValidRequest,
  facts: ModelFacts,
  out: GenerateSink,
  signal: AbortSignal,
): Promise<void> {
  const pngs = await Promise.all(kept.map((k) => encodePng(k.image.rgb, facts.resolution, facts.resolution)));
  for (const k of kept) {
    if (signal.aborted) throw stoppedBy(signal);
    await out.send({
      event: {
        $case: 'image',
        value: {
          index: k.index,
          seed: BigInt(imageSeed(req.seed, k.sample)),
          png: pngs[k.index]!,
          width: facts.resolution,
          height: facts.resolution,
          tokens: Array.from(k.image.tokens),
          score: k.image.score,
          rerankScore: k.rerankScore,
          candidate: k.candidate,
        },
      },
    });
  }
}

/** What the request cost and where its time went (queue, sampling, decoding, reranking). */
function summarize(
  req: ValidRequest,
  facts: ModelFacts,
  text: Int32Array,
  job: Job,
  t: { t0: number; tDecoded: number; rerankMs: number },
  images: number,
): GenerateSummary {
  const s = job.stats;
  const timings: Timings = {
    queueMs: (s.startedAt ?? s.enqueuedAt) - s.enqueuedAt,
    sampleMs: (s.sampledAt ?? t.tDecoded) - (s.startedAt ?? s.enqueuedAt),
    decodeMs: performance.now() - (s.sampledAt ?? t.tDecoded) - t.rerankMs,
    totalMs: performance.now() - t.t0,
    sharedSteps: s.sharedSteps,
    rerankMs: t.rerankMs,
  };
  return {
    model: { name: facts.name, version: facts.version },
    images,
    candidates: req.candidates,
    guidanceScale: req.guidanceScale,
    rows: job.cost,
    imageTokens: facts.grid * facts.grid,
    textTokens: text.reduce((n, id) => n + (id === 0 ? 0 : 1), 0),
    timings,
  };
}
