// W3C trace context in NATS message headers. With no OpenTelemetry SDK registered the global propagator
// is a no-op and this writes nothing; once telemetry/ installs the SDK, every chunk carries `traceparent`.
import { context, propagation, type Context, type TextMapGetter } from '@opentelemetry/api';
import type { MsgHdrs } from 'nats';

/** The propagation fields of `ctx` (e.g. { traceparent, tracestate }), computed once per operation and
 *  copied onto every message of it. */
export function traceFields(ctx: Context = context.active()): [string, string][] {
  const carrier: Record<string, string> = {};
  propagation.inject(ctx, carrier);
  return Object.entries(carrier);
}

const getter: TextMapGetter<MsgHdrs> = {
  get: (h, key) => (h.has(key) ? h.get(key) : undefined),
  keys: (h) => h.keys(),
};

/** The context a message was sent under (for linking a receiver's span to the sender's). */
export function extractTrace(h: MsgHdrs | undefined, base: Context = context.active()): Context {
  return h ? propagation.extract(base, h, getter) : base;
}
