// cli: one argument layer for every command and benchmark. Each answers --help / -h with its usage (exit
// 0); an unknown option and a bad value exit 2 with `dalle <command>: <what is wrong>` naming it. The
// dispatcher runs in one child process (`main(argv)` per case, output captured), so the cases cost one
// startup; two cases also go through bin/dalle.js to check the real exit codes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { benchmarks } from '../services/cli/bench.ts';
import { commands } from '../services/cli/commands.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const CLI = fileURLToPath(new URL('../bin/dalle.js', import.meta.url));

interface Outcome {
  argv: string[];
  code: number;
  out: string;
  err: string;
}

/** Runs `dalle <argv>` for every case in one child process; nothing starts: every case fails or helps
 *  before a command does any work. */
function dispatch(cases: string[][]): Outcome[] {
  const script = `
    import { main } from './services/cli/commands.ts';
    const results = [];
    const log = console.log, error = console.error;
    for (const argv of ${JSON.stringify(cases)}) {
      let out = '', err = '';
      console.log = (...a) => void (out += a.join(' ') + '\\n');
      console.error = (...a) => void (err += a.join(' ') + '\\n');
      const code = await main(argv).finally(() => { console.log = log; console.error = error; });
      results.push({ argv, code, out, err });
    }
    process.stdout.write(JSON.stringify(results));
    process.exit(0);`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    cwd: root,
    encoding: 'utf8',
    timeout: 240_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as Outcome[];
}

const names = [...Object.keys(commands).map((c) => [c]), ...benchmarks().map((b) => ['bench', b])];

test('cli: every command and benchmark answers --help and -h with its usage, exit 0', () => {
  const outcomes = dispatch(
    names.flatMap((n) => [
      [...n, '--help'],
      [...n, '-h'],
    ]),
  );
  assert.equal(outcomes.length, names.length * 2);
  for (const o of outcomes) {
    const cmd = o.argv.slice(0, -1).join(' ');
    assert.equal(o.code, 0, `dalle ${o.argv.join(' ')}: ${o.err}`);
    assert.ok(o.out.startsWith(`usage: dalle ${cmd}`), `dalle ${o.argv.join(' ')} printed: ${o.out}`);
    assert.match(o.out, /-h, --help +show this help/);
    assert.equal(o.err, '');
  }
});

test('cli: an unknown option exits 2 naming it, in one error style everywhere', () => {
  const outcomes = dispatch(names.map((n) => [...n, '--no-such-flag']));
  for (const o of outcomes) {
    const cmd = o.argv.slice(0, -1).join(' ');
    assert.equal(o.code, 2, `dalle ${o.argv.join(' ')}`);
    assert.equal(o.err.split('\n')[0], `dalle ${cmd}: unknown option '--no-such-flag'`);
    assert.match(o.err.split('\n')[1]!, new RegExp(`^usage: dalle ${cmd}`));
  }
});

test('cli: bad values, missing values and stray arguments exit 2 naming the problem', () => {
  const expected: [string[], string][] = [
    [['worker', '--slots', '0'], "dalle worker: --slots must be an integer ≥ 1, got '0'"],
    [['sampler', '--port', '70000'], "dalle sampler: --port must be an integer in [0, 65535], got '70000'"],
    [['eval', '--temperature=-1'], "dalle eval: --temperature must be a number > 0, got '-1'"],
    [
      ['eval', '--seed', '-1'],
      "dalle eval: option '--seed' needs a value (one that starts with '-' is written --seed=-…)",
    ],
    [['train', '--config'], "dalle train: option '--config' needs a value"],
    [['train'], 'dalle train: --config is required'],
    [['status', '--json=yes', 'run'], "dalle status: option '--json' takes no value"],
    [['down', 'now'], "dalle down: unexpected argument 'now'"],
    [['bench', 'dvae', '--steps', 'x'], "dalle bench dvae: --steps must be an integer ≥ 1, got 'x'"],
    [['bench', 'dvae', '--backends', 'gpu'], 'dalle bench dvae: --backends must be a comma list of'],
    [['bench', 'no-such-bench'], "dalle bench: unknown benchmark 'no-such-bench'"],
    [
      ['worker', '--host-id', 'a b'],
      "dalle worker: --host-id must be 1-128 characters of [A-Za-z0-9_.-], got 'a b'",
    ],
    [
      ['worker', '--exit-when-idle', '0'],
      "dalle worker: --exit-when-idle must be a number of seconds > 0, got '0'",
    ],
    [['config', 'plan', 'tiny'], 'dalle config: plan needs --hosts H and --gpus-per-host G'],
    [
      ['config', 'plan', 'tiny', '--hosts', '0', '--gpus-per-host', '8'],
      "dalle config: --hosts must be an integer ≥ 1, got '0'",
    ],
  ];
  const outcomes = dispatch(expected.map(([argv]) => argv));
  outcomes.forEach((o, i) => {
    assert.equal(o.code, 2, `dalle ${o.argv.join(' ')}: ${o.err}`);
    assert.ok(o.err.startsWith(expected[i]![1]), `dalle ${o.argv.join(' ')} said: ${o.err}`);
  });
});

test('cli: bin/dalle exits 0 on --help and 2 on an unknown option', () => {
  const help = spawnSync(process.execPath, [CLI, 'status', '--help'], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /^usage: dalle status <run-id>/);
  const bad = spawnSync(process.execPath, [CLI, 'generate', '--bogus', 'x'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /^dalle generate: unknown option '--bogus'\nusage: dalle generate/);
});
