// `dalle bench <name>`: runs bench/<name>.ts, whose `main(argv)` prints figures (never pass/fail on time)
// and parses its own options with the same argument layer (`dalle bench <name> --help`).
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { command, parseCommand, usageError } from './args.ts';
import { commands } from './commands.ts';
import { MODULE_EXT } from '../../config/package-root.ts';

const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url)); // compiled beside this file, or the sources

/** The benchmarks: bench/*.ts (bench/lib/ holds their shared helpers), compiled or not. */
export function benchmarks(): string[] {
  return readdirSync(benchDir)
    .filter((f) => f.endsWith(MODULE_EXT) && !f.endsWith(`.test${MODULE_EXT}`))
    .map((f) => f.slice(0, -MODULE_EXT.length))
    .sort();
}

export const cli = command({
  name: 'bench',
  summary: commands.bench.summary,
  positionals: '<name> [options]',
  options: {},
  notes: [
    `benchmarks: ${benchmarks().join(', ')}`,
    'dalle bench <name> --help: the options of one benchmark',
  ],
});

export async function run(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name?.startsWith('-')) parseCommand([name], cli); // --help, or an option bench itself does not have
  if (!name || !benchmarks().includes(name)) {
    throw usageError(
      cli,
      `${name ? `unknown benchmark '${name}'` : 'which benchmark?'}; available: ${benchmarks().join(', ')}`,
    );
  }
  const mod = (await import(`${benchDir}${name}${MODULE_EXT}`)) as { main(argv: string[]): Promise<void> };
  await mod.main(rest);
}
