import { check, serviceEnv, up } from '../../infra/services.ts';
import { parse } from './args.ts';

export async function run(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    { check: { type: 'boolean' }, json: { type: 'boolean' } },
    'dalle up [--check] [--json]',
  );
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
