// W3C trace context (`traceparent`, `tracestate`, `baggage`) in NATS message headers, through the global
// propagator that `initTelemetry` installs. collective/trace-headers.ts does the same for the collective's
// hot path (fields computed once per operation, copied onto every chunk); these helpers are for everything
// else that publishes or receives over NATS.
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  trace,
  type Context,
  type Link,
  type TextMapGetter,
  type TextMapSetter,
} from '@opentelemetry/api';
import { headers as natsHeaders, type MsgHdrs } from 'nats';

const setter: TextMapSetter<MsgHdrs> = {
  set: (h, key, value) => h.set(key, value),
};

const getter: TextMapGetter<MsgHdrs | undefined> = {
  get: (h, key) => (h?.has(key) ? h.get(key) : undefined),
  keys: (h) => (h ? h.keys() : []),
};

/** Writes the context's trace fields into `h` (a new header set when absent) and returns it. Without an
 *  active span, or before `initTelemetry`, nothing is written. */
export function injectNatsHeaders(h: MsgHdrs = natsHeaders(), ctx: Context = context.active()): MsgHdrs {
  propagation.inject(ctx, h, setter);
  return h;
}

/** The context a message was published under, on top of `base` (default: the active context). Use it as the
 *  parent of the receiver's span: `context.with(extractNatsContext(msg.headers), () => …)`. */
export function extractNatsContext(h: MsgHdrs | undefined, base: Context = context.active()): Context {
  return propagation.extract(base, h, getter);
}

/** A span link to the publisher's span, for a receiver whose own parent is something else (e.g. a rank's
 *  all-reduce span linking the peers whose chunks it summed). Undefined when the message carries none. */
export function linkFromNatsHeaders(h: MsgHdrs | undefined): Link | undefined {
  const sc = trace.getSpanContext(propagation.extract(ROOT_CONTEXT, h, getter));
  return sc && trace.isSpanContextValid(sc) ? { context: sc } : undefined;
}

/** Span kinds for messaging spans (re-exported so callers need not import the API for one enum). */
export const MessagingSpanKind = { publish: SpanKind.PRODUCER, receive: SpanKind.CONSUMER } as const;
