import { check, serviceEnv, up } from '../../infra/services.ts';
import { redactUrl } from '../../security/nats.ts';
import { recordedSecureStack, secureDir } from '../../security/secure-stack.ts';
import { command, parseCommand, UsageError } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({
  name: 'up',
  summary: commands.up.summary,
  options: {
    check: { type: 'boolean', help: 'report the health of each service; start and change nothing' },
    json: { type: 'boolean', help: 'print the statuses as JSON' },
    secure: {
      type: 'boolean',
      help: 'TLS with client certificates and credentials on every service (files under DALLE_HOME/secure)',
    },
    insecure: {
      type: 'boolean',
      help: 'allow listening beyond loopback without --secure (only on a network you trust)',
    },
  },
  notes: [
    'Addresses: TEMPORAL_ADDRESS, NATS_URL; state, pid files and logs: DALLE_HOME (./.dalle).',
    'Without --secure every service listens on loopback only, unless --insecure.',
  ],
});

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, cli);
  if (values.secure && values.insecure) throw new UsageError('give --secure or --insecure, not both', 'up');
  const env = serviceEnv();
  const statuses = values.check
    ? await check(env)
    : await up(env, { secure: values.secure, insecure: values.insecure });
  const secured = !!recordedSecureStack(env.home);
  // Addresses only: a URL's userinfo (a password or token) is never printed.
  const shown = statuses.map((s) => ({ ...s, address: redactUrl(s.address) }));
  if (values.json) console.log(JSON.stringify({ home: env.home, secure: secured, services: shown }, null, 2));
  else {
    for (const s of shown) {
      const what = s.action ?? (s.healthy ? 'healthy' : 'DOWN');
      console.log(
        `${s.name.padEnd(12)} ${s.address.padEnd(22)} ${what}${s.pid ? ` (pid ${s.pid})` : ''}${s.detail ? ` — ${s.detail}` : ''}`,
      );
    }
    console.log(`state: ${env.home}`);
    if (secured) {
      const dir = secureDir(env.home);
      console.log(`secured: TLS with client certificates and credentials on every service (${dir})`);
      console.log(`  each process sources its role's variables first, e.g.`);
      console.log(`  . ${dir}/worker.env && dalle worker      (also sampler.env, cli.env, admin.env)`);
    }
  }
  return statuses.every((s) => s.healthy) ? 0 : 1;
}
