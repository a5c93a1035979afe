// `dalle secure-config <dir> --host NAME…`: the credentials and certificates of a deployed secured cluster
// (security/deployment.ts), for the compose and Kubernetes overlays to mount. Prints paths, never secrets.
import { prepareDeployment } from '../../security/deployment.ts';
import { command, parseCommand, usageError } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({
  name: 'secure-config',
  summary: commands['secure-config'].summary,
  positionals: '<dir>',
  options: {
    host: {
      type: 'string',
      multiple: true,
      help: 'a name or address clients use to reach NATS or the sampler (repeat it; localhost is always in)',
    },
  },
  notes: [
    'compose: dalle secure-config infra/compose/secure --host nats-1 --host nats-2 --host nats-3 --host sampler',
    'Kubernetes: dalle secure-config infra/k8s/secure/files --host nats --host dalle-sampler',
  ],
});

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, cli);
  const dir = positionals[0];
  if (!dir || positionals.length > 1) throw usageError(cli, 'give exactly one directory');
  const files = await prepareDeployment(dir, values.host ?? []);
  console.log(`nats-server: -c ${files.natsServer.config} (TLS and JWT auth; auth.conf beside it)`);
  console.log(
    `credentials per role (worker, sampler, cli, admin) under ${files.dir}/pki and ${files.dir}/nats`,
  );
  console.log(`keep ${files.dir}/nats/{operator,account,system-account}.nk off the cluster's machines`);
  return 0;
}
