// bench/telemetry: what tracing costs the hot path. Per call of `traceAllReduce` around an empty operation
// (a span with 9 attributes + a histogram sample) and of `recordTrainStep` (3 gauges), in three setups:
// no endpoint (the API's no-op tracer), and the SDK exporting to a loopback OTLP/HTTP sink as protobuf and as
// JSON (batching, so the export itself runs off the timed path except for its CPU share).
//   dalle bench telemetry [--json] [--calls 20000]
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { initTelemetry, recordTrainStep, shutdownTelemetry, traceAllReduce } from '../telemetry/index.ts';

export const cli = command({
  name: 'bench telemetry',
  summary: 'per-call cost of the all-reduce span and the step gauges: no-op vs OTLP protobuf vs JSON',
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    calls: { type: 'string', value: 'N', help: 'timed calls per setup (default 20000)' },
  },
});

interface Row {
  setup: string;
  allReduceSpanUs: number;
  trainStepUs: number;
  exportRequests: number;
  exportBytes: number;
}

async function measure(
  setup: string,
  env: NodeJS.ProcessEnv,
  calls: number,
  sink: { requests: number; bytes: number },
): Promise<Row> {
  sink.requests = 0;
  sink.bytes = 0;
  initTelemetry({ serviceName: 'dalle-worker', env });
  const info = {
    runId: 'bench',
    stage: 'dvae' as const,
    step: 0,
    rank: 0,
    worldSize: 2,
    tag: 'P',
    bytesRaw: 1 << 20,
  };
  const op = async (s: { setResult(r: { bytesSent: number; chunks: number }): void }) =>
    s.setResult({ bytesSent: 1 << 19, chunks: 1 });
  for (let i = 0; i < 1000; i++) await traceAllReduce({ ...info, step: i }, op); // warm-up
  let t0 = performance.now();
  for (let i = 0; i < calls; i++) await traceAllReduce({ ...info, step: i }, op);
  const allReduceSpanUs = ((performance.now() - t0) * 1000) / calls;
  t0 = performance.now();
  for (let i = 0; i < calls; i++)
    recordTrainStep({
      runId: 'bench',
      stage: 'dvae',
      loss: 1 / (i + 1),
      stepsPerSec: 2,
      bytesRaw: 100,
      bytesSent: 10,
    });
  const trainStepUs = ((performance.now() - t0) * 1000) / calls;
  await shutdownTelemetry(); // flushes: the sink's counts cover every span
  return { setup, allReduceSpanUs, trainStepUs, exportRequests: sink.requests, exportBytes: sink.bytes };
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const json = !!values.json;
  const calls = readers(cli).int('calls', values.calls, 1) ?? 20_000;
  // A sink that answers like a Collector and throws the bytes away, so parsing does not load this process.
  const sink = { requests: 0, bytes: 0 };
  const server = createServer((req, res) => {
    req.on('data', (d: Buffer) => (sink.bytes += d.length));
    req.on('end', () => {
      sink.requests++;
      res
        .writeHead(200, { 'content-type': String(req.headers['content-type']) })
        .end(req.headers['content-type'] === 'application/json' ? '{}' : '');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const rows = [
      await measure('no endpoint (no-op)', {}, calls, sink),
      await measure(
        'OTLP http/protobuf',
        { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf' },
        calls,
        sink,
      ),
      await measure(
        'OTLP http/json',
        { OTEL_EXPORTER_OTLP_ENDPOINT: url, OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' },
        calls,
        sink,
      ),
      await measure('no endpoint, again', {}, calls, sink), // the first row also paid for JIT warm-up
    ];
    if (json) {
      console.log(JSON.stringify({ calls, rows }));
      return;
    }
    console.log(`telemetry cost per call (${calls} calls each; shared CPUs: compare rows of one run)`);
    console.log(
      '(a tight loop outruns the batch span queue of 2048: the excess spans are dropped, as the SDK does under overload)',
    );
    console.log('setup                  allReduce span µs  trainStep gauges µs  export requests  export MB');
    for (const r of rows) {
      console.log(
        `${r.setup.padEnd(22)} ${r.allReduceSpanUs.toFixed(2).padStart(17)}  ${r.trainStepUs.toFixed(2).padStart(19)}  ${String(r.exportRequests).padStart(15)}  ${(r.exportBytes / 1e6).toFixed(2).padStart(9)}`,
      );
    }
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
}
