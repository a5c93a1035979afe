// telemetry: the viewing stack in infra/compose is wired end to end (no Docker here: the files are checked
// as data — every pipeline component defined, the ports the README promises published, mounts matching).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';

const read = (name: string) =>
  parse(readFileSync(new URL(`../infra/compose/${name}`, import.meta.url), 'utf8')) as any;

test('telemetry: the compose stack sends OTLP/HTTP from dalle to Jaeger and Prometheus', () => {
  const compose = read('docker-compose.yaml');
  const col = read('otel-collector.yaml');
  const prom = read('prometheus.yaml');
  const svc = compose.services;

  // Every component a pipeline names is defined (the Collector refuses to start otherwise).
  for (const [name, p] of Object.entries<any>(col.service.pipelines)) {
    for (const kind of ['receivers', 'processors', 'exporters'] as const) {
      for (const id of p[kind] ?? [])
        assert.ok(id in (col[kind] ?? {}), `pipeline ${name}: ${kind.slice(0, -1)} '${id}' is defined`);
    }
  }
  for (const ext of col.service.extensions ?? [])
    assert.ok(ext in col.extensions, `extension ${ext} is defined`);
  assert.deepEqual(Object.keys(col.service.pipelines).sort(), ['metrics', 'traces']);

  // dalle exports to the Collector's OTLP/HTTP port on the host.
  assert.equal(col.receivers.otlp.protocols.http.endpoint, '0.0.0.0:4318');
  assert.ok(svc['otel-collector'].ports.includes('4318:4318'));
  // The config file the Collector is told to load is the one mounted.
  const configArg = svc['otel-collector'].command
    .find((a: string) => a.startsWith('--config='))!
    .slice('--config='.length);
  assert.ok(
    svc['otel-collector'].volumes.some(
      (v: string) => v.startsWith('./otel-collector.yaml:') && v.split(':')[1] === configArg,
    ),
  );

  // Traces go to the jaeger service's OTLP/gRPC port, which listens beyond localhost; its UI is published.
  const [jHost, jPort] = col.exporters['otlp/jaeger'].endpoint.split(':');
  assert.ok(jHost in svc, `'${jHost}' is a compose service`);
  assert.ok(svc.jaeger.command.includes(`--set=receivers.otlp.protocols.grpc.endpoint=0.0.0.0:${jPort}`));
  assert.ok(svc.jaeger.ports.includes('16686:16686'));

  // Metrics: Prometheus scrapes the Collector's exporter endpoint.
  const promPort = col.exporters.prometheus.endpoint.split(':')[1];
  assert.deepEqual(prom.scrape_configs[0].static_configs[0].targets, [`otel-collector:${promPort}`]);
  const promConfig = svc.prometheus.command[0].split('=')[1];
  assert.ok(
    svc.prometheus.volumes.some(
      (v: string) => v.startsWith('./prometheus.yaml:') && v.split(':')[1] === promConfig,
    ),
  );
  assert.ok(svc.prometheus.ports.includes('9090:9090'));
});
