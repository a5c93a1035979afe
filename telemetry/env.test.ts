import assert from 'node:assert/strict';
import { test } from 'node:test';
import { exportConfigFromEnv, TelemetryConfigError } from './env.ts';

test('telemetry env: no endpoint variable → nothing exported', () => {
  assert.deepEqual(exportConfigFromEnv({}), {});
  // Headers or a protocol alone do not turn export on.
  assert.deepEqual(
    exportConfigFromEnv({ OTEL_EXPORTER_OTLP_HEADERS: 'a=b', OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }),
    {},
  );
  assert.deepEqual(exportConfigFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: '   ' }), {});
});

test('telemetry env: base endpoint gets the signal paths, protobuf by default', () => {
  assert.deepEqual(exportConfigFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }), {
    traces: { url: 'http://collector:4318/v1/traces', protocol: 'http/protobuf' },
    metrics: { url: 'http://collector:4318/v1/metrics', protocol: 'http/protobuf', intervalMs: 60_000 },
  });
});

test('telemetry env: per-signal endpoints are used as given, and each signal can be off', () => {
  const c = exportConfigFromEnv({
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://t.example/x/traces',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/protobuf',
  });
  assert.deepEqual(c, { traces: { url: 'https://t.example/x/traces', protocol: 'http/protobuf' } });
  const m = exportConfigFromEnv({
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318',
    OTEL_TRACES_EXPORTER: 'none',
    OTEL_METRIC_EXPORT_INTERVAL: '1500',
  });
  assert.deepEqual(m, {
    metrics: { url: 'http://c:4318/v1/metrics', protocol: 'http/protobuf', intervalMs: 1500 },
  });
  assert.deepEqual(
    exportConfigFromEnv({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'TRUE' }),
    {},
  );
});

test('telemetry env: values it cannot honour are errors naming the variable', () => {
  const cases: [Record<string, string>, string][] = [
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }, 'OTEL_EXPORTER_OTLP_ENDPOINT'],
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: 'grpc://c:4317' }, 'OTEL_EXPORTER_OTLP_ENDPOINT'],
    [{ OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'not a url' }, 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT'],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
      'OTEL_EXPORTER_OTLP_PROTOCOL',
    ],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: 'json' },
      'OTEL_EXPORTER_OTLP_METRICS_PROTOCOL',
    ],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'zipkin' },
      'OTEL_TRACES_EXPORTER',
    ],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_METRIC_EXPORT_INTERVAL: '0' },
      'OTEL_METRIC_EXPORT_INTERVAL',
    ],
  ];
  for (const [env, variable] of cases) {
    assert.throws(
      () => exportConfigFromEnv(env),
      (e: unknown) =>
        e instanceof TelemetryConfigError && e.variable === variable && e.message.startsWith(variable),
      `${JSON.stringify(env)} should name ${variable}`,
    );
  }
});
