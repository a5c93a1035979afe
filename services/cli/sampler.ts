// `dalle sampler [--port N | --address host:port] [--model name] [--store dir]`: the gRPC sampling service.
// Serves the latest version of the model from the store (JetStream at NATS_URL, or a local folder), swaps
// in new versions as they are published, and drains on SIGINT/SIGTERM (a second signal stops at once).
import { command, parseCommand, readers, type OptionValues } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({
  name: 'sampler',
  summary: commands.sampler.summary,
  options: {
    port: { type: 'string', value: 'N', help: 'listen on this port, on the host of DALLE_SAMPLER_ADDRESS' },
    address: {
      type: 'string',
      value: 'host:port',
      help: 'listen here (default DALLE_SAMPLER_ADDRESS or 127.0.0.1:50051)',
    },
    model: { type: 'string', value: 'name', help: "the model served by default (default 'dalle')" },
    store: {
      type: 'string',
      value: 'dir',
      help: 'load models from a local store folder (default: JetStream at NATS_URL)',
    },
    'max-concurrent': { type: 'string', value: 'N', help: 'requests sampled at once (≥ 1)' },
    'max-queue': { type: 'string', value: 'N', help: 'requests waiting before RESOURCE_EXHAUSTED (≥ 0)' },
    'max-batch-rows': {
      type: 'string',
      value: 'N',
      help: 'rows in one forward pass, a guided row counting twice (≥ 16, default 256); a request must fit',
    },
    'max-rows': {
      type: 'string',
      value: 'N',
      help: 'rows generating or queued before RESOURCE_EXHAUSTED (≥ --max-batch-rows, default 1024)',
    },
    'max-candidates': {
      type: 'string',
      value: 'N',
      help: 'GenerateRequest.candidates allowed (default 64; more is INVALID_ARGUMENT)',
    },
    grace: { type: 'string', value: 'seconds', help: 'drain time on SIGINT/SIGTERM (default 30)' },
  },
});
const read = readers(cli);

/** host:port from --address, or --port on the host of DALLE_SAMPLER_ADDRESS. */
export function samplerAddress(
  values: { address?: string; port?: string },
  env: NodeJS.ProcessEnv = process.env,
): string {
  const base = env.DALLE_SAMPLER_ADDRESS || '127.0.0.1:50051';
  if (values.address && values.port) throw read.error('give --address or --port, not both');
  if (values.address) return values.address;
  if (values.port === undefined) return base;
  const port = read.int('port', values.port, 0, 65535)!;
  const host = base.slice(0, base.lastIndexOf(':')) || '127.0.0.1';
  return `${host}:${port}`;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, cli);
  const address = samplerAddress(values);
  const opts = await serviceOptions(values);
  const { initTelemetry, shutdownTelemetry, grpcServerTracing, observeQueueDepth } =
    await import('../../telemetry/index.ts');
  initTelemetry({ serviceName: 'dalle-sampler' });
  const store = await openStore(values.store);
  const { samplerServerSecurity } = await import('../../security/settings.ts');
  const security = samplerServerSecurity();
  const host = address.slice(0, address.lastIndexOf(':'));
  if (!security.tls && !/^(127\.\d+\.\d+\.\d+|\[?::1\]?|localhost)$/.test(host))
    process.stderr.write(
      `sampler: WARNING: serving ${address} beyond loopback without TLS${security.token ? ' (the token travels in clear)' : ''}; set DALLE_SAMPLER_TLS_CERT/KEY\n`,
    );
  const { SamplerService } = await import('../sampler/server.ts');
  const svc = new SamplerService({
    security,
    store: store.models,
    defaultModel: opts.model,
    scheduler: opts.scheduler,
    maxCandidates: opts.maxCandidates,
    interceptors: [grpcServerTracing()],
  });
  const stopQueueGauge = observeQueueDepth(() => svc.scheduler.queued);
  if (store.nats) followStoreConnection(store.nats, svc);
  const port = await svc.listen(address);
  const how = [
    security.tls ? (security.tls.clientCa ? 'mutual TLS' : 'TLS') : 'plaintext',
    security.token ? 'bearer token' : 'no token',
  ].join(', ');
  process.stderr.write(
    `sampler: listening on ${host}:${port} (${how}), model '${opts.model}' from ${store.where} (health NOT_SERVING until a version loads)\n`,
  );
  await untilStopped(svc, opts.graceMs);
  await store.close();
  // The final export still asks the drained scheduler for its queue depth: with the callback removed first,
  // that export repeated the last value observed while a request waited.
  await shutdownTelemetry();
  stopQueueGauge();
  return 0;
}

/** The model, scheduler limits, candidates cap and drain grace from the flags, checked. */
async function serviceOptions(values: OptionValues<typeof cli.options>) {
  const model = values.model ?? 'dalle';
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(model))
    throw read.error(`--model '${model}' must be lowercase letters, digits, - and _`);
  const scheduler = {
    maxConcurrent: read.int('max-concurrent', values['max-concurrent'], 1),
    maxQueue: read.int('max-queue', values['max-queue'], 0),
    maxBatchRows: read.int('max-batch-rows', values['max-batch-rows'], 16),
    maxRows: read.int('max-rows', values['max-rows'], 16),
  };
  const maxCandidates = read.int('max-candidates', values['max-candidates'], 1);
  const { defaultSchedulerOptions } = await import('../sampler/scheduler.ts');
  const batchRows = scheduler.maxBatchRows ?? defaultSchedulerOptions.maxBatchRows;
  if ((scheduler.maxRows ?? defaultSchedulerOptions.maxRows) < batchRows)
    throw read.error(`--max-rows must be ≥ --max-batch-rows ${batchRows} (one request may fill a batch)`);
  const graceMs = (read.num('grace', values.grace, (s) => s >= 0, 'a number of seconds ≥ 0') ?? 30) * 1000;
  return {
    model,
    scheduler: Object.fromEntries(Object.entries(scheduler).filter(([, v]) => v !== undefined)),
    maxCandidates,
    graceMs,
  };
}

/** The model store: a folder (--store), or JetStream through a NATS connection that never gives up. */
async function openStore(dir: string | undefined) {
  const { openModelStore } = await import('../../store/index.ts');
  if (dir) {
    const models = await openModelStore({ dir });
    return { models, where: `folder ${dir}`, nats: undefined, close: async () => {} };
  }
  const { connectNats, describeNatsAuth, redactUrl } = await import('../../security/nats.ts');
  const { natsSecurity } = await import('../../security/settings.ts');
  const sec = natsSecurity();
  process.stderr.write(`sampler: connecting to NATS at ${redactUrl(sec.url)} (waits until it answers)\n`);
  // Reconnects forever (also before the first connection): NATS being away pauses model updates, it
  // never ends the service.
  const nc = await connectNats(
    { name: 'dalle-sampler', maxReconnectAttempts: -1, reconnectTimeWait: 1000, waitOnFirstConnect: true },
    sec,
  );
  // Drain at most a few seconds: with the server away, a drain would wait for its return forever.
  const close = async () => {
    await Promise.race([nc.drain().catch(() => undefined), new Promise((r) => setTimeout(r, 3000))]);
    if (!nc.isClosed()) await nc.close();
  };
  const models = await openModelStore({ nc }, { readOnly: true });
  return { models, where: `JetStream at ${redactUrl(sec.url)} (${describeNatsAuth(sec)})`, nats: nc, close };
}

/** Health follows the store's connection; on its return the model watch catches up. */
function followStoreConnection(
  nc: import('nats').NatsConnection,
  svc: { setStoreConnected(up: boolean): void },
): void {
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') svc.setStoreConnected(false);
      else if (s.type === 'reconnect') svc.setStoreConnected(true);
    }
  })();
}

/** Resolves once a SIGINT/SIGTERM drained the service; a second signal stops it at once (exit 130). */
function untilStopped(svc: import('../sampler/server.ts').SamplerService, graceMs: number): Promise<void> {
  return new Promise<void>((resolve) => {
    let signals = 0;
    const onSignal = (sig: NodeJS.Signals) => {
      signals++;
      if (signals > 1) {
        process.stderr.write(`sampler: ${sig} again: stopping now\n`);
        svc.scheduler.stopAll('shutdown');
        svc.grpcServer.forceShutdown();
        process.exit(130);
      }
      process.stderr.write(`sampler: ${sig}: draining (up to ${graceMs / 1000} s; again to stop now)\n`);
      void svc.shutdown(graceMs).then(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}
