// infra: a port that looked free but was taken before `dalle up` bound it (under load another process picks
// the same free port in between) fails fast with an error naming the port, never a long hang; so does a
// port held by something that speaks HTTP/2 but never answers.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type ServerHttp2Session } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { portTakenInLog, temporalHealthy } from '../infra/services.ts';
import { CLI } from './fixtures/cluster.ts';
import { freePort } from './fixtures/secured-stack.ts';

/** Holds `port` bound but not listening: a connection is refused (the port looks free), a bind fails. */
async function holdBound(port: number): Promise<{ release(): void }> {
  const py =
    'import socket,sys,time\ns=socket.socket()\ns.bind(("127.0.0.1",int(sys.argv[1])))\nprint("bound",flush=True)\ntime.sleep(300)';
  const p = spawn('python3', ['-c', py, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((res, rej) => {
    p.stdout.once('data', () => res());
    p.once('exit', (c) => rej(new Error(`python3 exited ${c}`)));
  });
  return { release: () => void p.kill() };
}

test('infra: a port taken between the check and the bind fails `dalle up` at once, naming the port', async () => {
  const port = await freePort();
  const held = await holdBound(port);
  const home = mkdtempSync(join(tmpdir(), 'dalle-race-'));
  const env = {
    ...process.env,
    DALLE_HOME: home,
    DALLE_TEMPORAL_UI: '0',
    TEMPORAL_ADDRESS: `127.0.0.1:${port}`,
    NATS_URL: `nats://127.0.0.1:${await freePort()}`,
  };
  try {
    const t0 = Date.now();
    const r = spawnSync(process.execPath, [CLI, 'up'], { env, encoding: 'utf8', timeout: 120_000 });
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(r.status, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`PortInUseError: temporal: port 127\\.0\\.0\\.1:${port} was taken`));
    assert.ok(seconds < 30, `failed after ${seconds} s, not at once`); // the dev server's own start: ~60 s
  } finally {
    spawnSync(process.execPath, [CLI, 'down'], { env });
    held.release();
    rmSync(home, { recursive: true, force: true });
  }
});

test('infra: a health check against a server that never answers gives up within its timeout', async () => {
  // Answers the client's connection check (GetSystemInfo, an empty message) and nothing else.
  const silent = createServer();
  silent.on('stream', (stream, headers) => {
    if (!String(headers[':path']).endsWith('/GetSystemInfo')) return;
    stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
    stream.end(Buffer.alloc(5)); // a gRPC frame: not compressed, length 0
  });
  const sessions = new Set<ServerHttp2Session>();
  silent.on('session', (s) => sessions.add(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const { port } = silent.address() as { port: number };
  try {
    const t0 = Date.now();
    assert.equal(await temporalHealthy(`127.0.0.1:${port}`, 'default', 1000), false);
    assert.ok(Date.now() - t0 < 10_000, `took ${Date.now() - t0} ms`);
  } finally {
    for (const s of sessions) s.destroy();
    await new Promise((r) => silent.close(r));
  }
});

test('infra: the port a service could not bind is read from its log, whatever the service', () => {
  const lines = {
    temporal: `Error: can't set frontend port 7233: listen tcp 127.0.0.1:7233: bind: address already in use`,
    nats: `[FTL] Error listening on port: 127.0.0.1:4222, "listen tcp 127.0.0.1:4222: bind: address already in use"`,
    node: 'dalle __tls-proxy: Error: listen EADDRINUSE: address already in use 127.0.0.1:7234',
  };
  assert.deepEqual(portTakenInLog(`starting\n${lines.temporal}\n`), { host: '127.0.0.1', port: 7233 });
  assert.deepEqual(portTakenInLog(lines.nats), { host: '127.0.0.1', port: 4222 });
  assert.deepEqual(portTakenInLog(lines.node), { host: '127.0.0.1', port: 7234 });
  assert.equal(portTakenInLog('listening on 127.0.0.1:7233'), undefined);
});
