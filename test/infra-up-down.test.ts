// infra: `dalle up` is idempotent, restarts a dead service, refuses a foreign port; `down` stops only its own.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../bin/dalle.js', import.meta.url));

function dalle(args: string[], env: Record<string, string>) {
  const r = spawnSync(process.execPath, [cli, ...args], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return !/\) Z /.test(spawnSync('cat', [`/proc/${pid}/stat`], { encoding: 'utf8' }).stdout);
  } catch {
    return false;
  }
}

test('infra: up twice reuses, a killed nats-server comes back, down stops everything it started', async () => {
  const home = mkdtempSync(join(tmpdir(), 'dalle-up-'));
  const env = {
    DALLE_HOME: home,
    TEMPORAL_ADDRESS: '127.0.0.1:17433',
    NATS_URL: 'nats://127.0.0.1:14433',
    DALLE_TEMPORAL_UI: '0',
  };
  try {
    const first = dalle(['up', '--json'], env);
    assert.equal(first.code, 0, first.err);
    const a = JSON.parse(first.out).services as {
      name: string;
      pid: number;
      action: string;
      healthy: boolean;
    }[];
    assert.deepEqual(
      a.map((s) => [s.name, s.action, s.healthy]),
      [
        ['temporal', 'started', true],
        ['nats', 'started', true],
      ],
    );

    const second = JSON.parse(dalle(['up', '--json'], env).out).services as typeof a;
    assert.deepEqual(
      second.map((s) => [s.action, s.pid]),
      a.map((s) => ['reused', s.pid]),
      'second up starts nothing',
    );

    const nats = a.find((s) => s.name === 'nats')!;
    process.kill(nats.pid, 'SIGKILL');
    const third = JSON.parse(dalle(['up', '--json'], env).out).services as typeof a;
    assert.equal(third[0]!.action, 'reused');
    assert.equal(third[1]!.action, 'restarted');
    assert.notEqual(third[1]!.pid, nats.pid);

    const check = JSON.parse(dalle(['up', '--check', '--json'], env).out).services as typeof a;
    assert.ok(check.every((s) => s.healthy));

    assert.equal(dalle(['down'], env).code, 0);
    for (const s of [third[0]!, third[1]!])
      assert.equal(alive(s.pid), false, `${s.name} still running after down`);
    const after = dalle(['up', '--check', '--json'], env);
    assert.equal(after.code, 1);
    assert.ok((JSON.parse(after.out).services as typeof a).every((s) => !s.healthy));
  } finally {
    dalle(['down'], env);
    rmSync(home, { recursive: true, force: true });
  }
});

test('infra: a port held by a foreign process is a clear error, not a hang', async () => {
  const home = mkdtempSync(join(tmpdir(), 'dalle-up-'));
  const squatter = createServer(() => undefined);
  await new Promise<void>((r) => squatter.listen(14533, '127.0.0.1', r));
  const env = {
    DALLE_HOME: home,
    TEMPORAL_ADDRESS: '127.0.0.1:14533',
    NATS_URL: 'nats://127.0.0.1:14534',
    DALLE_TEMPORAL_UI: '0',
  };
  try {
    const t0 = Date.now();
    const r = await new Promise<ReturnType<typeof dalle>>((res) =>
      setImmediate(() => res(dalle(['up'], env))),
    );
    assert.notEqual(r.code, 0);
    assert.match(r.err, /port 127\.0\.0\.1:14533 is in use by a process that 'dalle up' did not start/);
    assert.ok(Date.now() - t0 < 30_000);
  } finally {
    squatter.close();
    dalle(['down'], env);
    rmSync(home, { recursive: true, force: true });
  }
});
