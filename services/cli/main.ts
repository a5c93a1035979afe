// `dalle <command>`: one dispatcher; each command lives in its own file and is loaded only when used,
// so `dalle up` never pays for tfjs and `dalle config` never needs a server.
import { ConfigError } from '../../config/index.ts';

type Command = { summary: string; load: () => Promise<{ run(argv: string[]): Promise<number | void> }> };

const commands: Record<string, Command> = {
  up: {
    summary: 'start Temporal dev server and nats-server (installs them if missing); --check reports health',
    load: () => import('./up.ts'),
  },
  down: { summary: 'stop the services that `dalle up` started', load: () => import('./down.ts') },
  config: {
    summary: 'config show <preset|file> [--json] | config schema',
    load: () => import('./config.ts'),
  },
  worker: {
    summary: 'worker [--slots N]: run training activities and workflows (task queue dalle-train)',
    load: () => import('./worker.ts'),
  },
  train: {
    summary: 'train --config <preset|file> [--run-id ID] [--detach]: start a training run',
    load: () => import('./train.ts'),
  },
  status: {
    summary: 'status <run-id> [--json]: state, progress and last checkpoint of a run',
    load: () => import('./status.ts'),
  },
  eval: {
    summary:
      'eval [--model NAME] [--server host:port | --store DIR] [--n N] [--seed S] [--json]: zero-shot accuracy on the shapes set vs a random-token baseline',
    load: () => import('./eval.ts'),
  },
  sampler: {
    summary: 'sampler [--port N] [--model name] [--store dir]: the gRPC sampling service (dalle.v1.Sampler)',
    load: () => import('./sampler.ts'),
  },
  generate: {
    summary:
      'generate "<prompt>" [-n 4] [--seed 7] [--out dir] [--server host:port] [--json]: images from the sampler',
    load: () => import('./generate.ts'),
  },
  demo: {
    summary:
      'demo [--minutes N]: the end-to-end demo (npm start): train shapes on 2 workers, kill one, serve, evaluate',
    load: () => import('./demo.ts'),
  },
  bench: { summary: 'bench <name> [--json]: run a benchmark from bench/', load: () => import('./bench.ts') },
};

export function usage(): string {
  const w = Math.max(...Object.keys(commands).map((k) => k.length));
  return [
    'usage: dalle <command> [options]',
    '',
    ...Object.entries(commands).map(([k, c]) => `  ${k.padEnd(w)}  ${c.summary}`),
  ].join('\n');
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = commands[name];
  if (!cmd) {
    console.error(`dalle: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  try {
    const code = await (await cmd.load()).run(rest);
    return typeof code === 'number' ? code : 0;
  } catch (e) {
    if (e instanceof ConfigError || (e instanceof Error && e.name === 'UsageError')) {
      console.error(`dalle ${name}: ${e.message}`);
      return 2;
    }
    console.error(`dalle ${name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return 1;
  }
}

// `dalle config show x | head` must not crash with EPIPE.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

process.exitCode = await main(process.argv.slice(2));
