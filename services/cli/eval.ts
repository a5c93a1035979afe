// `dalle eval`: the zero-shot evaluation (eval/) of a published shapes model, sampled in this process from
// the bundle or over gRPC from a running sampler (`--server`). Heavy modules (tfjs, sharp, grpc) are
// imported only on the path that needs them.
import { command, parseCommand, readers } from './args.ts';
import { commands } from './commands.ts';
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

export const cli = command({
  name: 'eval',
  summary: commands.eval.summary,
  options: {
    model: { type: 'string', value: 'NAME', help: "the published model (default 'dalle')" },
    version: { type: 'string', value: 'V', help: 'its version (default the latest)' },
    server: {
      type: 'string',
      value: 'host:port',
      help: 'generate over gRPC from this sampler (default: in this process)',
    },
    store: {
      type: 'string',
      value: 'DIR',
      help: 'load the model from a local store folder (default: JetStream at NATS_URL)',
    },
    n: {
      type: 'string',
      value: 'N',
      help: `prompts per group (default ${HELD_OUT_COMPOSITIONS.length}: every held-out composition once)`,
    },
    seed: {
      type: 'string',
      value: 'S',
      help: 'seed of prompt choice, sampling and random tokens (default 0)',
    },
    temperature: { type: 'string', value: 'T', help: 'sampling temperature (default 1)' },
    'top-k': { type: 'string', value: 'K', help: 'keep the K most likely tokens (default 0: all)' },
    json: { type: 'boolean', help: 'print the report as JSON' },
    details: { type: 'boolean', help: 'with --json: every judged image too' },
  },
});

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  const name = values.model ?? 'dalle';
  const version = read.int('version', values.version, 1);
  const n = read.int('n', values.n, 1) ?? HELD_OUT_COMPOSITIONS.length;
  const seed = read.int('seed', values.seed, 0) ?? 0;
  const topK = read.int('top-k', values['top-k'], 0) ?? 0;
  const temperature = read.num('temperature', values.temperature, (t) => t > 0, 'a number > 0') ?? 1;
  const log = (line: string) => process.stderr.write(`eval: ${line}\n`);

  // The bundle: from a local store folder, or from JetStream at NATS_URL.
  const { openModelStore } = await import('../../store/index.ts');
  let closeNats = async () => {};
  let models;
  if (values.store) {
    models = await openModelStore({ dir: values.store });
  } else {
    const { connectNats } = await import('../../security/nats.ts');
    const nc = await connectNats({ name: 'dalle-eval' });
    closeNats = () => nc.drain();
    models = await openModelStore({ nc }, { readOnly: true });
  }
  const cleanups: (() => void | Promise<void>)[] = [];
  try {
    const { info, bundle } = await models.load(name, version);
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
