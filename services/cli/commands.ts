// The `dalle` commands: each lives in its own file and is loaded only when used, so `dalle up` never pays
// for tfjs and `dalle config` never needs a server. The summaries here are the index `dalle --help` prints
// (each command's own `--help` repeats its summary above its options).
import { HelpRequested, UsageError } from './args.ts';
import { ConfigError } from '../../config/index.ts';

type Command = {
  summary: string;
  load: () => Promise<{ run(argv: string[]): Promise<number | void> }>;
  /** Started by other commands, not by people: left out of the usage list. */
  internal?: boolean;
};

export const commands = {
  up: {
    summary:
      'start the Temporal dev server and nats-server (installs them if missing); --secure adds TLS and credentials, --check reports health',
    load: () => import('./up.ts'),
  },
  down: { summary: 'stop the services that `dalle up` started', load: () => import('./down.ts') },
  'secure-config': {
    summary: 'certificates and NATS credentials of a deployed secured cluster (infra/compose, infra/k8s)',
    load: () => import('./secure-config.ts'),
  },
  config: {
    summary: 'show a preset or config file with every value resolved, or the JSON Schema of config files',
    load: () => import('./config.ts'),
  },
  worker: {
    summary: 'run training workflows and rank activities (task queue dalle-train)',
    load: () => import('./worker.ts'),
  },
  train: { summary: 'start a training run and follow its progress', load: () => import('./train.ts') },
  status: {
    summary: 'state, progress and last checkpoint of a run',
    load: () => import('./status.ts'),
  },
  eval: {
    summary: 'zero-shot accuracy of a published shapes model vs a random-token baseline',
    load: () => import('./eval.ts'),
  },
  sampler: {
    summary: 'the gRPC sampling service (dalle.v1.Sampler)',
    load: () => import('./sampler.ts'),
  },
  generate: { summary: 'images for a caption from a running sampler', load: () => import('./generate.ts') },
  demo: {
    summary: 'the end-to-end demo (npm start): train shapes on 2 workers, kill one, serve, evaluate',
    load: () => import('./demo.ts'),
  },
  console: {
    summary: 'the web console: runs, their curves and sample grids, models, a Generate playground',
    load: () => import('./console.ts'),
  },
  bench: {
    summary: 'run a benchmark from bench/ (figures, never pass/fail)',
    load: () => import('./bench.ts'),
  },
  '__tls-proxy': {
    summary: 'the mutual-TLS front of a secured stack (started by dalle up --secure, stopped by dalle down)',
    load: () => import('./tls-proxy.ts'),
    internal: true,
  },
} satisfies Record<string, Command>;

export type CommandName = keyof typeof commands;

export function usage(): string {
  const w = Math.max(...Object.keys(commands).map((k) => k.length));
  return [
    'usage: dalle <command> [options]      (dalle <command> --help for its options)',
    '',
    ...Object.entries(commands as Record<string, Command>)
      .filter(([, c]) => !c.internal)
      .map(([k, c]) => `  ${k.padEnd(w)}  ${c.summary}`),
  ].join('\n');
}

/** Runs `dalle <argv>`; returns the exit code: 0 ok (and --help), 1 failure, 2 bad command line. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name ? 0 : 2;
  }
  const cmd = (commands as Record<string, Command>)[name];
  if (!cmd) {
    console.error(`dalle: unknown command '${name}'\n\n${usage()}`);
    return 2;
  }
  try {
    const code = await (await cmd.load()).run(rest);
    return typeof code === 'number' ? code : 0;
  } catch (e) {
    if (e instanceof HelpRequested) {
      console.log(e.text);
      return 0;
    }
    if (e instanceof UsageError) {
      console.error(`dalle ${e.command ?? name}: ${e.message}${e.usage ? `\nusage: ${e.usage}` : ''}`);
      return 2;
    }
    // Errors of what the user set up (a config file, a security variable, an address): the message is the
    // whole story, no stack.
    if (
      e instanceof ConfigError ||
      (e instanceof Error && (e as { userError?: unknown }).userError === true)
    ) {
      console.error(`dalle ${name}: ${e.message}`);
      return 2;
    }
    console.error(`dalle ${name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    return 1;
  }
}
