// `npm test`: typecheck, lint, format check, then every *.test.ts under node's test runner, against real services that
// this script starts on its own ports and $DALLE_HOME (so a user's running stack is never touched).
import { spawnSync } from 'node:child_process';
import { readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { down, serviceEnv, up } from '../infra/services.ts';
import { redactUrl } from '../security/nats.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const skipDirs = new Set(['node_modules', '.git', '.dalle', '.dalle-test', 'dist', 'proto']);

function findTests(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (skipDirs.has(name) || name.startsWith('.')) continue;
    if (statSync(p).isDirectory()) findTests(p, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out.sort();
}

function step(title: string, cmd: string, args: string[]): boolean {
  const t0 = Date.now();
  console.log(`\n== ${title}: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  console.log(
    `== ${title}: ${r.status === 0 ? 'ok' : `FAILED (exit ${r.status ?? r.signal})`} in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
  return r.status === 0;
}

const filter = process.argv.slice(2);
process.env.TEMPORAL_ADDRESS = process.env.DALLE_TEST_TEMPORAL_ADDRESS || '127.0.0.1:17233';
process.env.NATS_URL = process.env.DALLE_TEST_NATS_URL || 'nats://127.0.0.1:14222';
process.env.DALLE_HOME = join(root, '.dalle-test');
process.env.DALLE_TEMPORAL_UI = '0';
const env = serviceEnv();

let ok = true;
if (!filter.length) {
  ok = step('typecheck', 'npx', ['tsc', '--noEmit', '-p', '.']) && ok;
  ok = step('typecheck (console page)', 'npx', ['tsc', '--noEmit', '-p', 'services/console/web']) && ok;
  ok = step('lint', 'npx', ['eslint', '--max-warnings', '0', '.']) && ok;
  ok = step('format', 'npx', ['prettier', '--check', '--log-level', 'warn', '.']) && ok;
}

// Every run starts from an empty test home. A workflow that an earlier, failed session left running would
// otherwise resume on this session's workers and take their slots; wiping the home also drops its
// checkpoints, buckets and Temporal history, which terminating stale runs one by one would leave behind (and
// which could make a test's outcome depend on an earlier session). down() first stops servers an interrupted
// session left running on this home (it stops only what its pid files name).
await down(env);
rmSync(env.home, { recursive: true, force: true });

console.log(
  `\n== services: Temporal ${env.temporalAddress}, NATS ${redactUrl(env.natsUrl)}, state ${env.home}`,
);
await up(env);
const files = findTests(root).filter((f) => !filter.length || filter.some((x) => f.includes(x)));
console.log(`== ${files.length} test files`);
try {
  ok =
    step('tests', process.execPath, [
      '--import',
      'tsx',
      '--test',
      '--test-concurrency=1',
      '--test-timeout=900000',
      ...files,
    ]) && ok;
} finally {
  await down(env); // only what up started under this test $DALLE_HOME
}
process.exitCode = ok ? 0 : 1;
