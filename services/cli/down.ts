import { down, serviceEnv } from '../../infra/services.ts';
import { parse } from './args.ts';

export async function run(argv: string[]): Promise<number> {
  parse(argv, {}, 'dalle down');
  for (const r of await down(serviceEnv()))
    console.log(`${r.name.padEnd(8)} ${r.stopped ? 'stopped' : 'not running (nothing to stop)'}`);
  return 0;
}
