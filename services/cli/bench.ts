// `dalle bench <name>`: runs bench/<name>.ts, whose `main(argv)` prints figures (never pass/fail on time).
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { UsageError } from './args.ts';

const benchDir = fileURLToPath(new URL('../../bench/', import.meta.url));

export async function run(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  const available = readdirSync(benchDir)
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.test.ts'))
    .map((f) => f.slice(0, -3));
  if (!name || !available.includes(name)) {
    throw new UsageError(
      `${name ? `unknown benchmark '${name}'` : 'which benchmark?'}; available: ${available.join(', ') || '(none yet)'}`,
    );
  }
  const mod = (await import(`${benchDir}${name}.ts`)) as { main(argv: string[]): Promise<void> };
  await mod.main(rest);
}
