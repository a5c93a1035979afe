import { check, serviceEnv, up } from '../../infra/services.ts';
import { command, parseCommand } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({
  name: 'up',
  summary: commands.up.summary,
  options: {
    check: { type: 'boolean', help: 'report the health of each service; start and change nothing' },
    json: { type: 'boolean', help: 'print the statuses as JSON' },
  },
  notes: ['Addresses: TEMPORAL_ADDRESS, NATS_URL; state, pid files and logs: DALLE_HOME (./.dalle).'],
});

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, cli);
  const env = serviceEnv();
  const statuses = values.check ? await check(env) : await up(env);
  if (values.json) console.log(JSON.stringify({ home: env.home, services: statuses }, null, 2));
  else {
    for (const s of statuses) {
      const what = s.action ?? (s.healthy ? 'healthy' : 'DOWN');
      console.log(
        `${s.name.padEnd(8)} ${s.address.padEnd(22)} ${what}${s.pid ? ` (pid ${s.pid})` : ''}${s.detail ? ` — ${s.detail}` : ''}`,
      );
    }
    console.log(`state: ${env.home}`);
  }
  return statuses.every((s) => s.healthy) ? 0 : 1;
}
