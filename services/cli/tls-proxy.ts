// `dalle __tls-proxy`: the mutual-TLS front a secured `dalle up` starts for Temporal's dev server. Internal
// (not listed in `dalle --help`): `dalle up --secure` passes every option; `dalle down` stops it.
import { startTlsProxy } from '../../security/tls-proxy.ts';
import { command, parseCommand, UsageError } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({
  name: '__tls-proxy',
  summary: commands['__tls-proxy'].summary,
  options: {
    listen: { type: 'string', value: 'host:port', help: 'where clients connect', required: true },
    target: { type: 'string', value: 'host:port', help: 'the plaintext service behind it', required: true },
    cert: { type: 'string', value: 'FILE', help: 'server certificate (PEM)', required: true },
    key: { type: 'string', value: 'FILE', help: 'its private key (PEM)', required: true },
    'client-ca': {
      type: 'string',
      value: 'FILE',
      help: 'CA that client certificates must chain to',
      required: true,
    },
  },
});

function hostPort(flag: string, v: string | undefined): { host: string; port: number } {
  const i = v?.lastIndexOf(':') ?? -1;
  const port = Number(v?.slice(i + 1));
  if (!v || i < 1 || !Number.isInteger(port) || port < 1 || port > 65535)
    throw new UsageError(`--${flag} must be host:port, got '${v ?? ''}'`, cli.name);
  return { host: v.slice(0, i), port };
}

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, cli);
  const log = (msg: string) => process.stderr.write(`${new Date().toISOString()} tls-proxy: ${msg}\n`);
  const server = await startTlsProxy({
    listen: hostPort('listen', values.listen),
    target: hostPort('target', values.target),
    certFile: values.cert!,
    keyFile: values.key!,
    clientCaFile: values['client-ca']!,
    log,
  });
  log(`mutual TLS on ${values.listen} → ${values.target}`);
  await new Promise<void>((resolve) => {
    const stop = () => server.close(() => resolve());
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  return 0;
}
