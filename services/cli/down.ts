import { down, serviceEnv } from '../../infra/services.ts';
import { command, parseCommand } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({ name: 'down', summary: commands.down.summary, options: {} });

export async function run(argv: string[]): Promise<number> {
  parseCommand(argv, cli);
  for (const r of await down(serviceEnv()))
    console.log(`${r.name.padEnd(8)} ${r.stopped ? 'stopped' : 'not running (nothing to stop)'}`);
  return 0;
}
