// `dalle sampler [--port N | --address host:port] [--model name] [--store dir]`: the gRPC sampling service.
// Serves the latest version of the model from the store (JetStream at NATS_URL, or a local folder), swaps
// in new versions as they are published, and drains on SIGINT/SIGTERM (a second signal stops at once).
import { parse, UsageError } from './args.ts';

const usage =
  'dalle sampler [--port N | --address host:port] [--model name] [--store dir] [--max-concurrent N] [--max-queue N] [--max-batch-rows N] [--grace seconds]';

function intOption(name: string, v: string | undefined, min: number): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${v}'\nusage: ${usage}`);
  return n;
}

/** host:port from --address, or --port on the host of DALLE_SAMPLER_ADDRESS. */
export function samplerAddress(
  values: { address?: string; port?: string },
  env: NodeJS.ProcessEnv = process.env,
): string {
  const base = env.DALLE_SAMPLER_ADDRESS || '127.0.0.1:50051';
  if (values.address && values.port)
    throw new UsageError(`give --address or --port, not both\nusage: ${usage}`);
  if (values.address) return values.address;
  if (values.port === undefined) return base;
  const port = intOption('port', values.port, 0)!;
  if (port > 65535) throw new UsageError(`--port must be ≤ 65535, got ${port}`);
  const host = base.slice(0, base.lastIndexOf(':')) || '127.0.0.1';
  return `${host}:${port}`;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      port: { type: 'string' },
      address: { type: 'string' },
      model: { type: 'string' },
      store: { type: 'string' },
      'max-concurrent': { type: 'string' },
      'max-queue': { type: 'string' },
      'max-batch-rows': { type: 'string' },
      grace: { type: 'string' },
    },
    usage,
  );
  if (positionals.length > 0)
    throw new UsageError(`unexpected argument '${positionals[0]}'\nusage: ${usage}`);
  const address = samplerAddress(values);
  const model = values.model ?? 'dalle';
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(model))
    throw new UsageError(`--model '${model}' must be lowercase letters, digits, - and _`);
  const scheduler = {
    maxConcurrent: intOption('max-concurrent', values['max-concurrent'], 1),
    maxQueue: intOption('max-queue', values['max-queue'], 0),
    maxBatchRows: intOption('max-batch-rows', values['max-batch-rows'], 16),
  };
  const graceMs = values.grace === undefined ? 30_000 : Number(values.grace) * 1000;
  if (!(graceMs >= 0)) throw new UsageError(`--grace must be a number of seconds ≥ 0, got '${values.grace}'`);

  const { initTelemetry, shutdownTelemetry, grpcServerTracing, observeQueueDepth } =
    await import('../../telemetry/index.ts');
  initTelemetry({ serviceName: 'dalle-sampler' });
  const { openStores } = await import('../../store/index.ts');
  let closeNats = async () => {};
  let stores;
  let where: string;
  if (values.store) {
    stores = await openStores({ dir: values.store });
    where = `folder ${values.store}`;
  } else {
    const { connect } = await import('nats');
    const { serviceEnv } = await import('../../infra/services.ts');
    const url = serviceEnv().natsUrl;
    const nc = await connect({ servers: url, name: 'dalle-sampler' });
    closeNats = () => nc.drain();
    stores = await openStores({ nc });
    where = `JetStream at ${url}`;
  }
  const { SamplerService } = await import('../sampler/server.ts');
  const svc = new SamplerService({
    store: stores.models,
    defaultModel: model,
    scheduler: Object.fromEntries(Object.entries(scheduler).filter(([, v]) => v !== undefined)),
    interceptors: [grpcServerTracing()],
  });
  const stopQueueGauge = observeQueueDepth(() => svc.scheduler.queued);
  const port = await svc.listen(address);
  const host = address.slice(0, address.lastIndexOf(':'));
  process.stderr.write(
    `sampler: listening on ${host}:${port}, model '${model}' from ${where} (health NOT_SERVING until a version loads)\n`,
  );

  const stopped = new Promise<void>((resolve) => {
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
  await stopped;
  stopQueueGauge();
  await closeNats();
  await shutdownTelemetry();
  return 0;
}
