// gRPC tracing as grpc-js interceptors, so the sampler and its clients add one option each and keep their
// handlers free of telemetry: a CLIENT span per call (traceparent injected into the request metadata), a
// SERVER span per call (parent extracted from it) with the request's attributes and the final status code,
// and on the server the Generate latency histogram and the in-flight gauge. The server span is the active
// context while the handler runs, so the handler can add attributes (`activeSpan().setAttribute(…)`) and
// its own child spans.
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import {
  InterceptingCall,
  Metadata,
  ServerInterceptingCall,
  status as Status,
  type Interceptor,
  type ServerInterceptor,
  type StatusObject,
} from '@grpc/grpc-js';
import { dalleMetrics } from './metrics.ts';
import { getTracer } from './api.ts';

/** Attribute keys of Generate spans. */
export const GENERATE_ATTR = {
  numImages: 'dalle.generate.num_images',
  /** BPE text tokens of the caption (after truncation to textLen). */
  textTokens: 'dalle.generate.text_tokens',
  /** Image tokens sampled per image. */
  imageTokens: 'dalle.generate.image_tokens',
  modelName: 'dalle.model.name',
  modelVersion: 'dalle.model.version',
  /** Candidates sampled per image returned (reranking; 1 = none), as asked. */
  candidates: 'dalle.generate.candidates',
  /** Classifier-free guidance scale (1 = none), as asked. */
  guidanceScale: 'dalle.generate.guidance_scale',
  /** Rows of the batched forward pass the request took: images × candidates, ×2 with guidance. */
  rows: 'dalle.generate.rows',
  /** Milliseconds the reranker took to score the candidates. */
  rerankMs: 'dalle.generate.rerank_ms',
} as const;

const setter: TextMapSetter<Metadata> = { set: (md, key, value) => md.set(key, value) };
const getter: TextMapGetter<Metadata> = {
  get: (md, key) => {
    const v = md.get(key);
    return v.length === 0 ? undefined : v.map((x) => (typeof x === 'string' ? x : x.toString('utf8')));
  },
  keys: (md) => Object.keys(md.getMap()),
};

/** Writes the context's trace fields into gRPC metadata (for callers that build metadata by hand). */
export function injectGrpcMetadata(md: Metadata = new Metadata(), ctx: Context = context.active()): Metadata {
  propagation.inject(ctx, md, setter);
  return md;
}

/** The caller's trace context from request metadata. */
export function extractGrpcContext(md: Metadata, base: Context = context.active()): Context {
  return propagation.extract(base, md, getter);
}

/** `/dalle.v1.Sampler/Generate` → { service: 'dalle.v1.Sampler', method: 'Generate' } */
function splitPath(path: string): { service: string; method: string } {
  const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
  return m ? { service: m[1]!, method: m[2]! } : { service: 'unknown', method: path };
}

function rpcAttributes(path: string): Attributes {
  const { service, method } = splitPath(path);
  return { 'rpc.system': 'grpc', 'rpc.service': service, 'rpc.method': method };
}

/** Maps a request message to span attributes; `undefined` for none. */
export type RequestAttributes = (path: string, request: unknown) => Attributes | undefined;

/** Generate's request attributes: `numImages`, `candidates` and `guidanceScale` as sent (unset means 1) and the
 *  requested model (`model: { name, version }` of dalle.v1.GenerateRequest; version 0 or unset = latest,
 *  recorded as asked). The server adds
 *  what only it knows (text tokens, the version actually served) with `activeSpan().setAttributes(…)`. */
export const generateRequestAttributes: RequestAttributes = (path, request) => {
  if (!path.endsWith('/Generate') || typeof request !== 'object' || request === null) return undefined;
  const r = request as {
    numImages?: unknown;
    candidates?: unknown;
    guidanceScale?: unknown;
    model?: { name?: unknown; version?: unknown };
  };
  const num = (v: unknown) => (typeof v === 'number' ? v : 1);
  const out: Attributes = {
    [GENERATE_ATTR.numImages]: num(r.numImages),
    [GENERATE_ATTR.candidates]: num(r.candidates),
    [GENERATE_ATTR.guidanceScale]: num(r.guidanceScale),
  };
  if (typeof r.model?.name === 'string' && r.model.name) out[GENERATE_ATTR.modelName] = r.model.name;
  if (typeof r.model?.version === 'number' && r.model.version > 0)
    out[GENERATE_ATTR.modelVersion] = r.model.version;
  return out;
};

export interface GrpcTracingOptions {
  /** Which methods to trace; default: all but grpc.health.v1 and server reflection. */
  traced?: (path: string) => boolean;
  /** Request attributes; default `generateRequestAttributes`. */
  requestAttributes?: RequestAttributes;
}

const defaultTraced = (path: string) =>
  !path.startsWith('/grpc.health.') && !path.startsWith('/grpc.reflection.');

/** OTel semconv for gRPC servers: these codes are the server's fault; the rest (INVALID_ARGUMENT,
 *  RESOURCE_EXHAUSTED, CANCELLED, …) are the caller's and leave the server span unset. */
const SERVER_ERROR_CODES = new Set<number>([
  Status.UNKNOWN,
  Status.DEADLINE_EXCEEDED,
  Status.UNIMPLEMENTED,
  Status.INTERNAL,
  Status.UNAVAILABLE,
  Status.DATA_LOSS,
]);

function endWithStatus(
  span: Span,
  code: number,
  details: string | undefined,
  kind: 'client' | 'server',
): void {
  span.setAttribute('rpc.grpc.status_code', code);
  if (code !== Status.OK) {
    span.setAttribute('rpc.grpc.status_text', Status[code] ?? String(code));
    if (kind === 'client' || SERVER_ERROR_CODES.has(code)) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: `${Status[code] ?? code}: ${details ?? ''}` });
    }
  }
  span.end();
}

/**
 * Server interceptor: `new grpc.Server({ interceptors: [grpcServerTracing()] })`. Per traced call: a SERVER
 * span `<package.Service>/<Method>` whose parent is the caller's traceparent, the request attributes, the
 * final `rpc.grpc.status_code` (CANCELLED when the client goes away); the handler runs inside the span's
 * context; `dalle.generate.duration` and `dalle.sampler.requests_in_flight` are recorded.
 */
export function grpcServerTracing(opts: GrpcTracingOptions = {}): ServerInterceptor {
  const traced = opts.traced ?? defaultTraced;
  const requestAttributes = opts.requestAttributes ?? generateRequestAttributes;
  return (descriptor, call) => {
    const path = descriptor.path;
    if (!traced(path)) return new ServerInterceptingCall(call);
    const { method } = splitPath(path);
    let span: Span | undefined;
    let ctx: Context = context.active();
    let t0 = 0;
    let ended = false;
    const finish = (code: number, details: string | undefined) => {
      if (ended || !span) return;
      ended = true;
      endWithStatus(span, code, details, 'server');
      const m = dalleMetrics();
      m.inFlight.add(-1, { 'rpc.method': method });
      m.generateSeconds.record((performance.now() - t0) / 1000, {
        'rpc.method': method,
        'rpc.grpc.status_code': code,
      });
    };
    return new ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMd) => {
            // ROOT, not the active context: a request's only parent is the caller's traceparent.
            const parent = extractGrpcContext(metadata, ROOT_CONTEXT);
            span = getTracer().startSpan(
              path.slice(1),
              { kind: SpanKind.SERVER, attributes: rpcAttributes(path) },
              parent,
            );
            ctx = trace.setSpan(parent, span);
            t0 = performance.now();
            dalleMetrics().inFlight.add(1, { 'rpc.method': method });
            nextMd(metadata);
          },
          onReceiveMessage: (message, nextMsg) => {
            const a = requestAttributes(path, message);
            if (a && span) span.setAttributes(a);
            context.with(ctx, () => nextMsg(message));
          },
          // Unary and server-streaming handlers are invoked on half-close: run that inside the span.
          onReceiveHalfClose: (nextHc) => context.with(ctx, () => nextHc()),
          onCancel: () => finish(Status.CANCELLED, 'cancelled by the client'),
        });
      },
      sendStatus: (st, nextSt) => {
        finish(st.code ?? Status.UNKNOWN, st.details);
        nextSt(st);
      },
    });
  };
}

/**
 * Client interceptor: `new SamplerClient(addr, creds, { interceptors: [grpcClientTracing()] })` (or per call).
 * Per traced call: a CLIENT span, child of the caller's active context, whose traceparent goes into the
 * request metadata; request attributes; the final status code (any non-OK marks it ERROR).
 */
export function grpcClientTracing(opts: GrpcTracingOptions = {}): Interceptor {
  const traced = opts.traced ?? defaultTraced;
  const requestAttributes = opts.requestAttributes ?? generateRequestAttributes;
  return (options, nextCall) => {
    const path = options.method_definition.path;
    if (!traced(path)) return new InterceptingCall(nextCall(options));
    const parent = context.active();
    const span = getTracer().startSpan(
      path.slice(1),
      { kind: SpanKind.CLIENT, attributes: rpcAttributes(path) },
      parent,
    );
    const ctx = trace.setSpan(parent, span);
    let ended = false;
    return new InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        injectGrpcMetadata(metadata, ctx);
        next(metadata, {
          onReceiveStatus: (st: StatusObject, nextSt: (s: StatusObject) => void) => {
            if (!ended) {
              ended = true;
              endWithStatus(span, st.code, st.details, 'client');
            }
            nextSt(st);
          },
        });
      },
      sendMessage: (message, next) => {
        const a = requestAttributes(path, message);
        if (a) span.setAttributes(a);
        next(message);
      },
    });
  };
}
