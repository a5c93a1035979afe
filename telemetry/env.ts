// What to export, read from the standard OpenTelemetry environment variables and nothing else, so that an
// operator configures dalle exactly like any other OTel-instrumented process. No endpoint variable set means
// no exporter is built at all: nothing is sent, nothing is retried, nothing can fail.
//
// Honoured: OTEL_SDK_DISABLED, OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER (`otlp` | `none`),
// OTEL_EXPORTER_OTLP_ENDPOINT (base URL; `/v1/traces`, `/v1/metrics` appended),
// OTEL_EXPORTER_OTLP_{TRACES,METRICS}_ENDPOINT (full URL, used as is), OTEL_EXPORTER_OTLP[_{SIGNAL}]_PROTOCOL
// (`http/protobuf`, the spec's default, or `http/json`), OTEL_METRIC_EXPORT_INTERVAL (ms).
// Headers, timeout and compression (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION) are read by the
// exporters themselves.

export type OtlpProtocol = 'http/protobuf' | 'http/json';

export interface SignalExport {
  /** Full URL of the signal's OTLP/HTTP path, e.g. http://127.0.0.1:4318/v1/traces. */
  url: string;
  protocol: OtlpProtocol;
}

export interface ExportConfig {
  /** Absent: spans are not exported (and, with metrics also absent, not even recorded). */
  traces?: SignalExport;
  /** Absent: metrics are not exported. */
  metrics?: SignalExport & { intervalMs: number };
}

/** An OTEL_* variable holds a value this build cannot honour; the variable and the accepted values are named. */
export class TelemetryConfigError extends Error {
  override name = 'TelemetryConfigError';
  constructor(
    readonly variable: string,
    readonly value: string,
    readonly expected: string,
  ) {
    super(`${variable}='${value}' is not supported: expected ${expected}`);
  }
}

type Signal = 'TRACES' | 'METRICS';

function nonEmpty(env: NodeJS.ProcessEnv, key: string): string | undefined {
  const v = env[key]?.trim();
  return v ? v : undefined;
}

function checkUrl(variable: string, value: string): string {
  let u: URL;
  try {
    u = new URL(value);
  } catch {
    throw new TelemetryConfigError(
      variable,
      value,
      'an absolute http:// or https:// URL, e.g. http://127.0.0.1:4318',
    );
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new TelemetryConfigError(
      variable,
      value,
      'an http:// or https:// URL (this build exports OTLP over HTTP, port 4318 on a Collector)',
    );
  }
  return value;
}

function protocolOf(env: NodeJS.ProcessEnv, signal: Signal): OtlpProtocol {
  const specific = `OTEL_EXPORTER_OTLP_${signal}_PROTOCOL`;
  const variable = nonEmpty(env, specific) !== undefined ? specific : 'OTEL_EXPORTER_OTLP_PROTOCOL';
  const value = nonEmpty(env, variable) ?? 'http/protobuf';
  if (value === 'http/protobuf' || value === 'http/json') return value;
  throw new TelemetryConfigError(
    variable,
    value,
    "'http/protobuf' or 'http/json' (gRPC export is not built in: point the process at a Collector's OTLP/HTTP port, 4318)",
  );
}

function exporterEnabled(env: NodeJS.ProcessEnv, signal: Signal): boolean {
  const variable = `OTEL_${signal}_EXPORTER`;
  const value = nonEmpty(env, variable);
  if (value === undefined) return true;
  const names = value.split(',').map((s) => s.trim());
  if (names.every((n) => n === 'otlp' || n === 'none')) return names.includes('otlp');
  throw new TelemetryConfigError(variable, value, "'otlp' or 'none'");
}

function signalExport(env: NodeJS.ProcessEnv, signal: Signal): SignalExport | undefined {
  if (!exporterEnabled(env, signal)) return undefined;
  const specificVar = `OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`;
  const specific = nonEmpty(env, specificVar);
  const base = nonEmpty(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  let url: string;
  if (specific !== undefined) {
    url = checkUrl(specificVar, specific);
  } else if (base !== undefined) {
    checkUrl('OTEL_EXPORTER_OTLP_ENDPOINT', base);
    url = `${base.replace(/\/+$/, '')}/v1/${signal.toLowerCase()}`;
  } else {
    return undefined;
  }
  return { url, protocol: protocolOf(env, signal) };
}

function positiveInt(env: NodeJS.ProcessEnv, variable: string, fallback: number): number {
  const raw = nonEmpty(env, variable);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0)
    throw new TelemetryConfigError(variable, raw, 'a positive integer number of milliseconds');
  return n;
}

/** The export configuration the environment asks for. Throws TelemetryConfigError on a value it cannot honour
 *  (a bad URL, gRPC, an unknown exporter name) rather than silently exporting nowhere. */
export function exportConfigFromEnv(env: NodeJS.ProcessEnv = process.env): ExportConfig {
  const disabled = nonEmpty(env, 'OTEL_SDK_DISABLED');
  if (disabled !== undefined && disabled.toLowerCase() === 'true') return {};
  const traces = signalExport(env, 'TRACES');
  const metrics = signalExport(env, 'METRICS');
  return {
    ...(traces ? { traces } : {}),
    ...(metrics
      ? { metrics: { ...metrics, intervalMs: positiveInt(env, 'OTEL_METRIC_EXPORT_INTERVAL', 60_000) } }
      : {}),
  };
}
