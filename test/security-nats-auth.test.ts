// security: every NATS credential the clients accept (user/password, the same in the URL's userinfo, a token,
// an NKEY seed) authenticates against a real nats-server that requires it; a wrong or missing one is
// refused; neither a description of the connection nor `dalle up --check` shows the secret. (`.creds` + mutual
// TLS: the secured stack.)
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createUser } from '@nats-io/nkeys';
import { connect } from 'nats';
import { ensureNatsBinary } from '../infra/services.ts';
import { connectNats, describeNatsAuth, redactUrl } from '../security/nats.ts';
import { natsSecurity } from '../security/settings.ts';
import { dalle } from './fixtures/cluster.ts';
import { freePort } from './fixtures/secured-stack.ts';

const dir = mkdtempSync(join(tmpdir(), 'dalle-nats-auth-'));
const PASSWORD = 'pw-9f2c81d7e4';
const TOKEN = 'tok-5b0e6a3c17';
const nkey = createUser();
const nkeyFile = join(dir, 'user.nk');
const otherNkeyFile = join(dir, 'other.nk');
const servers: ChildProcess[] = [];
let usersUrl = '';
let tokenUrl = '';

/** A nats-server on a free loopback port with `authorization` as given; resolves once it answers. */
async function natsWith(name: string, authorization: string): Promise<string> {
  const conf = join(dir, `${name}.conf`);
  // JetStream too: `dalle up --check` calls it to call a server healthy.
  writeFileSync(
    conf,
    `jetstream { store_dir: "${join(dir, `${name}-js`)}" }\nauthorization {\n${authorization}\n}\n`,
  );
  const port = await freePort();
  const server = spawn(ensureNatsBinary(), ['-c', conf, '-a', '127.0.0.1', '-p', String(port)], {
    stdio: 'ignore',
  });
  servers.push(server);
  const url = `nats://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    // Any answer (here: the refusal of an anonymous client) means the server is up.
    const up = await connect({ servers: url, reconnect: false, timeout: 1000 }).then(
      async (nc) => (await nc.close(), true),
      (e: { code?: string }) => e.code === 'AUTHORIZATION_VIOLATION',
    );
    if (up) return url;
    assert.ok(i < 40 && server.exitCode === null, `nats-server ${name} did not start`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

before(async () => {
  writeFileSync(nkeyFile, new TextDecoder().decode(nkey.getSeed()), { mode: 0o600 });
  writeFileSync(otherNkeyFile, new TextDecoder().decode(createUser().getSeed()), { mode: 0o600 });
  const pub = nkey.getPublicKey();
  usersUrl = await natsWith('users', `users: [ { user: alice, password: "${PASSWORD}" }, { nkey: ${pub} } ]`);
  tokenUrl = await natsWith('token', `token: "${TOKEN}"`);
});

after(() => {
  for (const s of servers) s.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

/** 'ok' when a client with these variables connects and answers a ping, else the refusal's code. */
async function attempt(env: Record<string, string>): Promise<string> {
  const sec = natsSecurity(env);
  const shown = `${redactUrl(sec.url)} ${describeNatsAuth(sec)}`;
  assert.ok(![PASSWORD, TOKEN].some((s) => shown.includes(s)), `a secret in '${shown}'`);
  try {
    const nc = await connectNats({ reconnect: false, timeout: 3000 }, sec);
    try {
      await nc.flush();
      return 'ok';
    } finally {
      await nc.close();
    }
  } catch (e) {
    return (e as { code?: string }).code ?? (e as Error).message;
  }
}

test('security: NATS user/password (variables or URL userinfo) and an NKEY seed authenticate; wrong ones are refused', async () => {
  assert.equal(await attempt({ NATS_URL: usersUrl, NATS_USER: 'alice', NATS_PASSWORD: PASSWORD }), 'ok');
  const userinfo = usersUrl.replace('nats://', `nats://alice:${PASSWORD}@`);
  assert.equal(await attempt({ NATS_URL: userinfo }), 'ok', 'userinfo in NATS_URL is used, not ignored');
  assert.equal(await attempt({ NATS_URL: usersUrl, NATS_NKEY: nkeyFile }), 'ok');

  const refused = 'AUTHORIZATION_VIOLATION';
  assert.equal(await attempt({ NATS_URL: usersUrl }), refused, 'anonymous');
  assert.equal(await attempt({ NATS_URL: usersUrl, NATS_USER: 'alice', NATS_PASSWORD: 'guess' }), refused);
  assert.equal(await attempt({ NATS_URL: usersUrl, NATS_NKEY: otherNkeyFile }), refused, 'an unknown NKEY');
});

test('security: a NATS token authenticates; a wrong or missing one is refused', async () => {
  assert.equal(await attempt({ NATS_URL: tokenUrl, NATS_TOKEN: TOKEN }), 'ok');
  assert.equal(await attempt({ NATS_URL: tokenUrl, NATS_TOKEN: 'tok-guess' }), 'AUTHORIZATION_VIOLATION');
  assert.equal(await attempt({ NATS_URL: tokenUrl }), 'AUTHORIZATION_VIOLATION');
});

test('security: `dalle up --check` reaches a password-protected NATS through URL userinfo and prints no secret', () => {
  const userinfo = usersUrl.replace('nats://', `nats://alice:${PASSWORD}@`);
  const r = dalle(['up', '--check', '--json'], { DALLE_HOME: dir, NATS_URL: userinfo });
  assert.equal(r.code, 0, r.err);
  assert.ok(!(r.out + r.err).includes(PASSWORD), 'the password was printed');
  const nats = (
    JSON.parse(r.out) as { services: { name: string; address: string; healthy: boolean }[] }
  ).services.find((s) => s.name === 'nats');
  assert.deepEqual(nats, { name: 'nats', address: usersUrl.replace('nats://', ''), healthy: true });
});
