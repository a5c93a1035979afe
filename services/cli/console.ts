// `dalle console [--port N | --address host:port] [--sampler host:port]`: the web console (services/console).
// Listens on loopback unless told otherwise, prints its URL (with the token when it made one) and serves
// until SIGINT/SIGTERM.
import { ConsoleConfigError, consoleOptions, DEFAULT_CONSOLE_ADDRESS } from '../console/env.ts';
import { command, parseCommand, readers } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({
  name: 'console',
  summary: commands.console.summary,
  options: {
    port: { type: 'string', value: 'N', help: 'listen on this port, on the host of DALLE_CONSOLE_ADDRESS' },
    address: {
      type: 'string',
      value: 'host:port',
      help: `listen here (default DALLE_CONSOLE_ADDRESS or ${DEFAULT_CONSOLE_ADDRESS}; beyond loopback every API call needs the token)`,
    },
    sampler: {
      type: 'string',
      value: 'host:port',
      help: 'the sampler for the playground and the models view (default DALLE_SAMPLER_ADDRESS)',
    },
  },
  notes: [
    'Run controls need the bearer token: DALLE_CONSOLE_TOKEN, DALLE_CONSOLE_TOKEN_FILE, or one made per',
    'start (printed in the URL, written to $DALLE_HOME/console.token). HTTPS: DALLE_CONSOLE_TLS_CERT/_KEY.',
  ],
});
const read = readers(cli);

/** host:port from --address, or --port on the host of DALLE_CONSOLE_ADDRESS. */
export function consoleAddress(
  values: { address?: string; port?: string },
  env: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (values.address && values.port) throw read.error('give --address or --port, not both');
  if (values.address) return values.address;
  const port = read.int('port', values.port, 0, 65535);
  if (port === undefined) return undefined;
  const base = env.DALLE_CONSOLE_ADDRESS || DEFAULT_CONSOLE_ADDRESS;
  return `${base.slice(0, base.lastIndexOf(':'))}:${port}`;
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, cli);
  let options;
  try {
    options = consoleOptions({ address: consoleAddress(values), sampler: values.sampler });
  } catch (e) {
    if (e instanceof ConsoleConfigError) throw read.error(e.message);
    throw e;
  }
  const { startConsole } = await import('../console/server.ts');
  const c = await startConsole(options);
  const withToken = options.tokenSource === 'generated' ? `${c.url}?token=${options.token}` : c.url;
  console.log(`dalle console: ${withToken}`);
  console.log(
    options.tokenSource === 'generated'
      ? '  run controls need the token in that URL (also in $DALLE_HOME/console.token; set DALLE_CONSOLE_TOKEN to choose one)'
      : `  run controls need the token from ${options.tokenSource}`,
  );
  if (!options.loopback)
    console.log(
      `  listening on ${options.host}, beyond loopback: every API call needs the token${options.tls ? '' : ' (and it travels unencrypted: set DALLE_CONSOLE_TLS_CERT/KEY)'}`,
    );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await c.close();
  return 0;
}
