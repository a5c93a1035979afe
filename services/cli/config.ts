import { configJsonSchema, loadSpec, type RunSpec } from '../../config/index.ts';
import { command, parseCommand, readers, usageError } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({
  name: 'config',
  summary: commands.config.summary,
  positionals: 'show <preset|file> | plan <preset|file> | schema',
  options: {
    json: { type: 'boolean', help: 'show, plan: print JSON' },
    hosts: { type: 'string', value: 'H', help: 'plan: machines' },
    'gpus-per-host': { type: 'string', value: 'G', help: 'plan: GPUs (ranks) per machine' },
  },
  notes: [
    'show <preset|file>  every value of a preset (tiny, shapes, cub, paper-12b) or a JSON/YAML file, with',
    '                    parameter counts; a file names its `preset` and only what differs',
    'plan <preset|file>  memory per GPU and bytes crossing hosts per step, flat vs parameters sharded',
    '                    within hosts (train.parameterSharding host), for --hosts H --gpus-per-host G',
    'schema              the JSON Schema of config files',
  ],
});

/** Parameter counts come from the model files (analytic: nothing is allocated, so paper-12b is fine). */
async function parameterCounts(spec: RunSpec): Promise<Record<string, number | null>> {
  const count = async (file: string, fn: string, ...args: unknown[]) => {
    try {
      const mod = (await import(file)) as Record<string, (...a: unknown[]) => number>;
      return typeof mod[fn] === 'function' ? mod[fn](...args) : null;
    } catch {
      return null;
    }
  };
  return {
    dvae: await count('../../model/index.ts', 'dvaeParameterCount', spec.dvae),
    transformer: await count(
      '../../model/index.ts',
      'transformerParameterCount',
      spec.transformer,
      spec.dvae,
    ),
  };
}

export async function run(argv: string[]): Promise<void> {
  const { values, positionals } = parseCommand(argv, cli);
  const [sub, ref] = positionals;
  if (sub === 'schema' && positionals.length === 1) {
    console.log(JSON.stringify(configJsonSchema(), null, 2));
    return;
  }
  if ((sub !== 'show' && sub !== 'plan') || !ref || positionals.length > 2)
    throw usageError(
      cli,
      sub === 'show' || sub === 'plan' ? `${sub} needs one preset or file` : `expected show, plan or schema`,
    );
  const spec = loadSpec(ref);
  if (sub === 'plan') {
    const read = readers(cli);
    const hosts = read.int('hosts', values.hosts, 1);
    const perHost = read.int('gpus-per-host', values['gpus-per-host'], 1);
    if (hosts === undefined || perHost === undefined)
      throw usageError(cli, 'plan needs --hosts H and --gpus-per-host G');
    const { printPlan } = await import('./config-plan.ts');
    return printPlan(spec, hosts, perHost, values.json === true);
  }
  const params = await parameterCounts(spec);
  const shown = {
    ...spec,
    dvae: { ...spec.dvae, parameters: params.dvae },
    transformer: { ...spec.transformer, parameters: params.transformer },
  };
  if (values.json) {
    console.log(JSON.stringify(shown, null, 2));
    return;
  }
  const fmt = (n: number | null) =>
    n === null
      ? 'n/a'
      : n >= 1e9
        ? `${(n / 1e9).toFixed(2)}B`
        : n >= 1e6
          ? `${(n / 1e6).toFixed(2)}M`
          : `${n}`;
  console.log(`preset ${spec.preset}, model name '${spec.modelName}'`);
  for (const [section, body] of Object.entries(shown)) {
    if (typeof body !== 'object') continue;
    console.log(`${section}:`);
    for (const [k, v] of Object.entries(body))
      console.log(`  ${k.padEnd(22)} ${k === 'parameters' ? fmt(v as number | null) : JSON.stringify(v)}`);
  }
}
