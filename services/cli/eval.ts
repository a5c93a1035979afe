// `dalle eval`: the zero-shot evaluation (eval/) of a published shapes model, sampled in this process from
// the bundle or over gRPC from a running sampler (`--server`). Heavy modules (tfjs, sharp, grpc) are
// imported only on the path that needs them.
import { parse, UsageError } from './args.ts';
import {
  bundleDvae,
  EvalOptionError,
  evaluateShapes,
  formatEvalTable,
  grpcGenerator,
  samplingModelGenerator,
  summary,
  type GenerateFn,
} from '../../eval/index.ts';
import { HELD_OUT_COMPOSITIONS } from '../../data/shapes.ts';

const USAGE =
  'dalle eval [--model NAME] [--version V] [--server host:port | --store DIR] [--n N] [--seed S] [--temperature T] [--top-k K] [--json] [--details]';

function intOption(name: string, raw: string | undefined, dflt: number, min: number): number {
  if (raw === undefined) return dflt;
  const v = Number(raw);
  if (!(Number.isInteger(v) && v >= min))
    throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${raw}'\nusage: ${USAGE}`);
  return v;
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      model: { type: 'string' },
      version: { type: 'string' },
      server: { type: 'string' },
      store: { type: 'string' },
      n: { type: 'string' },
      seed: { type: 'string' },
      temperature: { type: 'string' },
      'top-k': { type: 'string' },
      json: { type: 'boolean' },
      details: { type: 'boolean' },
    },
    USAGE,
  );
  if (positionals.length > 0)
    throw new UsageError(`unexpected argument '${positionals[0]}'\nusage: ${USAGE}`);
  const name = values.model ?? 'dalle';
  const version = values.version === undefined ? undefined : intOption('version', values.version, 1, 1);
  const n = intOption('n', values.n, HELD_OUT_COMPOSITIONS.length, 1);
  const seed = intOption('seed', values.seed, 0, 0);
  const topK = intOption('top-k', values['top-k'], 0, 0);
  const temperature = values.temperature === undefined ? 1 : Number(values.temperature);
  if (!(Number.isFinite(temperature) && temperature > 0))
    throw new UsageError(`--temperature must be a number > 0, got '${values.temperature}'`);
  const log = (line: string) => process.stderr.write(`eval: ${line}\n`);

  // The bundle: from a local store folder, or from JetStream at NATS_URL.
  const { openStores } = await import('../../store/index.ts');
  let closeNats = async () => {};
  let stores;
  if (values.store) {
    stores = await openStores({ dir: values.store });
  } else {
    const { connect } = await import('nats');
    const { serviceEnv } = await import('../../infra/services.ts');
    const nc = await connect({ servers: serviceEnv().natsUrl, name: 'dalle-eval' });
    closeNats = () => nc.drain();
    stores = await openStores({ nc });
  }
  const cleanups: (() => void | Promise<void>)[] = [];
  try {
    const { info, bundle } = await stores.models.load(name, version);
    log(
      `model ${info.name} v${info.version} (${(info.bytes / 1e6).toFixed(1)} MB, ${JSON.stringify(info.meta)})`,
    );
    const dvae = await bundleDvae(bundle);
    cleanups.push(() => dvae.dispose());
    const ds = dvae.spec.dataset;
    if (ds.kind !== 'shapes') {
      throw new EvalOptionError(
        'model',
        `${info.name} v${info.version}`,
        `was trained on a '${ds.kind}' dataset; the evaluation judges shapes-set images only`,
      );
    }
    let generate: GenerateFn;
    if (values.server) {
      const g = await grpcGenerator(values.server, { model: name, version: info.version, temperature, topK });
      cleanups.push(() => g.close());
      generate = g.generate;
      log(`generating over gRPC at ${values.server}`);
    } else {
      const { loadBundleModel } = await import('../sampler/tf-engine.ts');
      const model = await loadBundleModel(bundle, {
        name: info.name,
        version: info.version,
        createdAt: info.createdAt,
      });
      cleanups.push(() => model.dispose());
      generate = samplingModelGenerator(model, { temperature, topK });
      log('generating in this process (no --server)');
    }
    const report = await evaluateShapes({ generate, dvae, n, seed, datasetSeed: ds.seed, log });
    if (values.json) {
      console.log(
        JSON.stringify({
          model: { name: info.name, version: info.version },
          temperature,
          topK,
          ...(values.details ? report : summary(report)),
        }),
      );
    } else {
      console.log(
        `zero-shot evaluation of ${info.name} v${info.version} (${n} prompts per group, seed ${seed}, temperature ${temperature}${topK ? `, top-k ${topK}` : ''})\n`,
      );
      console.log(formatEvalTable(report));
    }
    return 0;
  } finally {
    for (const c of cleanups.reverse()) await c();
    await closeNats();
  }
}
