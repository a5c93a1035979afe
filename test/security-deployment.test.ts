// security: the NATS configuration the compose and Kubernetes overlays ship. `dalle secure-config` makes a
// deployment's credentials; a real nats-server loads the shipped config from there (as the overlays mount
// it) and enforces each role's permissions: no anonymous client, ranks only on their run's subjects, the
// sampler reads models and cannot publish one. The overlays mount each role only its own files.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { connect, credsAuthenticator, type NatsConnection } from 'nats';
import { parse as parseYaml } from 'yaml';
import { ensureNatsBinary, natsHealthy } from '../infra/services.ts';
import { inboxPrefix, type Role } from '../security/nats-accounts.ts';
import { connectNats, natsOptions } from '../security/nats.ts';
import { mintRankCredentials } from '../security/run-credentials.ts';
import { natsSecurity } from '../security/settings.ts';
import { SHIPPED_NATS_CONFIG } from '../security/deployment.ts';
import { BUCKETS, NatsStorageBackend, openModelStore } from '../store/index.ts';
import { CLI } from './fixtures/cluster.ts';
import { freePort } from './fixtures/secured-stack.ts';

const dir = mkdtempSync(join(tmpdir(), 'dalle-deploy-'));
let url = '';
let server: ReturnType<typeof spawn> | undefined;

/** The variables a process of `role` gets in the overlays, with this test's paths. */
const roleEnv = (role: Role): Record<string, string> => ({
  NATS_URL: url,
  NATS_CA: join(dir, 'pki/ca.crt'),
  NATS_CERT: join(dir, `pki/client-${role}.crt`),
  NATS_KEY: join(dir, `pki/client-${role}.key`),
  NATS_CREDS: join(dir, `nats/${role}.creds`),
  ...(inboxPrefix(role) ? { NATS_INBOX_PREFIX: inboxPrefix(role)! } : {}),
  ...(role === 'worker' ? { NATS_RANK_SIGNING_KEY: join(dir, 'nats/rank-signer.nk') } : {}),
});
const as = (role: Role) => connectNats({ reconnect: false }, natsSecurity(roleEnv(role)));

before(async () => {
  const made = spawnSync(process.execPath, [CLI, 'secure-config', dir, '--host', 'nats-1'], {
    encoding: 'utf8',
  });
  assert.equal(made.status, 0, made.stderr);
  const token = readFileSync(join(dir, 'sampler-token'), 'utf8');
  assert.ok(!made.stdout.includes(token) && !/SU[A-Z0-9]{20}/.test(made.stdout), 'no secret printed');
  const port = await freePort();
  url = `tls://localhost:${port}`;
  // The shipped file, as the overlays mount it (its port and monitoring port moved off the defaults here).
  assert.equal(
    readFileSync(join(dir, 'nats/nats-server.conf'), 'utf8'),
    readFileSync(SHIPPED_NATS_CONFIG, 'utf8'),
  );
  const args = [
    '-c',
    join(dir, 'nats/nats-server.conf'),
    '-a',
    '127.0.0.1',
    '-p',
    String(port),
    '-m',
    String(await freePort()),
  ];
  server = spawn(ensureNatsBinary(), args, {
    env: {
      ...process.env,
      NATS_TLS_CERT: join(dir, 'pki/server.crt'),
      NATS_TLS_KEY: join(dir, 'pki/server.key'),
      NATS_TLS_CA: join(dir, 'pki/ca.crt'),
      NATS_STORE_DIR: join(dir, 'js'),
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  server.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  const admin = natsOptions(natsSecurity(roleEnv('admin')));
  for (let i = 0; !(await natsHealthy(url, 2000, admin)); i++) {
    assert.ok(
      i < 40 && server.exitCode === null,
      `nats-server did not start with the shipped config: ${log}`,
    );
    await new Promise((r) => setTimeout(r, 250));
  }
  const nc = await as('admin');
  await NatsStorageBackend.open(nc, BUCKETS.modelObjects, BUCKETS.modelsKv);
  await nc.close();
});

after(async () => {
  server?.kill('SIGTERM');
  if (server && server.exitCode === null) await new Promise((r) => server!.once('exit', r));
  rmSync(dir, { recursive: true, force: true });
});

test('security: the shipped NATS config refuses clients without our certificate or a user', async () => {
  const refused = (o: Parameters<typeof connect>[0]) =>
    connect({ servers: url, reconnect: false, timeout: 3000, ...o }).then(
      async (nc) => (await nc.close(), 'connected'),
      (e: Error & { code?: string }) => e.code ?? e.message,
    );
  assert.notEqual(await refused({ servers: url.replace('tls://', 'nats://') }), 'connected');
  assert.notEqual(await refused({ tls: { caFile: join(dir, 'pki/ca.crt') } }), 'connected', 'no client cert');
  const env = roleEnv('admin');
  const certOnly = await refused({
    tls: { caFile: env.NATS_CA, certFile: env.NATS_CERT, keyFile: env.NATS_KEY },
  });
  assert.equal(certOnly, 'AUTHORIZATION_VIOLATION', 'a certificate alone is not a user');
});

/** Subjects `watcher` saw while `act` ran. */
async function seen(watcher: NatsConnection, act: () => Promise<void>): Promise<string[]> {
  const got: string[] = [];
  const sub = watcher.subscribe('dalle.>', { callback: (_e, m) => got.push(m.subject) });
  await watcher.flush();
  await act();
  await new Promise((r) => setTimeout(r, 500));
  sub.unsubscribe();
  return got;
}

test('security: under the shipped config ranks publish only on their run, and the sampler cannot publish a model', async () => {
  const admin = await as('admin');
  const worker = await as('worker');
  const sampler = await as('sampler');
  const workerSec = natsSecurity(roleEnv('worker'));
  const rank = await connectNats(
    {
      reconnect: false,
      authenticator: credsAuthenticator(await mintRankCredentials('runA', workerSec)),
      inboxPrefix: '_INBOX_runA',
    },
    workerSec,
  );
  try {
    const got = await seen(admin, async () => {
      rank.publish('dalle.runA.g0.rs.1.0', 'mine');
      rank.publish('dalle.runB.g0.rs.1.0', 'forged');
      worker.publish('dalle.runA.g0.rs.1.1', 'not a rank');
      sampler.publish('dalle.runA.g0.rs.1.2', 'not a rank');
      await Promise.all([rank.flush(), worker.flush(), sampler.flush()]);
    });
    assert.deepEqual(got, ['dalle.runA.g0.rs.1.0'], 'only the rank, only on its own run');

    const models = await openModelStore({ nc: sampler }, { readOnly: true });
    assert.equal(await models.latest('dalle'), undefined, 'the sampler reads the models bucket');
    await assert.rejects(models.publish('dalle', new Uint8Array([1, 2, 3])), 'the sampler cannot publish');
    const published = await (await openModelStore({ nc: worker })).publish('dalle', new Uint8Array([4, 5]));
    assert.equal(published.version, 1, 'the worker role publishes models');
    assert.equal((await models.latest('dalle'))?.version, 1, 'and the sampler sees them');
  } finally {
    for (const nc of [admin, worker, sampler, rank]) await nc.close().catch(() => undefined);
  }
});

type Obj = Record<string, any>;
const yaml = (path: string) => parseYaml(readFileSync(path, 'utf8'), { merge: true }) as Obj;
const ROLE_FILE = /(worker|sampler|cli|admin)\.creds$|client-(worker|sampler|cli|admin)\./;

/** `files` are a `role`'s: its own certificate and user, the rank key for workers, no signing key. */
function onlyOwn(where: string, role: Role, files: string[]): void {
  assert.ok(
    files.some((f) => f.endsWith(`nats/${role}.creds`)),
    `${where} gets ${role}.creds`,
  );
  for (const f of files) {
    if (f.endsWith('.nk')) assert.ok(role === 'worker' && f.endsWith('rank-signer.nk'), `${where}: ${f}`);
    const m = ROLE_FILE.exec(f);
    if (m) assert.equal(m[1] ?? m[2], role, `${where} (${role}) must not get ${f}`);
  }
}

test('security: the compose and Kubernetes overlays mount each role only its own credentials', () => {
  const compose = yaml('infra/compose/cluster-secure.yaml');
  const mounts = (svc: string) =>
    ((compose.services[svc]?.volumes ?? []) as string[]).map((v) => v.split(':')[0]!);
  const roles: Record<string, Role> = {
    'worker-0': 'worker',
    'worker-1': 'worker',
    sampler: 'sampler',
    train: 'cli',
    cli: 'cli',
  };
  for (const [svc, role] of Object.entries(roles)) {
    onlyOwn(`compose ${svc}`, role, mounts(svc));
    const env = compose.services[svc].environment as Obj;
    assert.equal(env.NATS_CREDS, `/etc/dalle/nats/${role}.creds`);
    assert.equal(env.NATS_INBOX_PREFIX, inboxPrefix(role));
    assert.match(String(env.NATS_URL), /^tls:\/\//);
  }
  for (const n of ['nats-1', 'nats-2', 'nats-3']) {
    const s = compose.services[n] as Obj;
    assert.deepEqual((s.command as string[]).slice(0, 2), ['-c', '/etc/nats/nats-server.conf'], n);
    assert.ok(
      mounts(n).includes('./secure/nats/nats-server.conf') && mounts(n).includes('./secure/nats/auth.conf'),
    );
    assert.ok(!mounts(n).some((m) => /\.creds$|\.nk$/.test(m)), `${n} holds no user credentials`);
  }

  const k8s = yaml('infra/k8s/secure/kustomization.yaml');
  const secrets = new Map<string, string[]>(
    (k8s.secretGenerator as Obj[]).map((g) => [g.name, (g.files as string[]).map((f) => f.split('=')[1]!)]),
  );
  const k8sRoles: Record<string, Role> = {
    'worker-nats.yaml': 'worker',
    'sampler-nats.yaml': 'sampler',
    'train-nats.yaml': 'cli',
  };
  for (const [file, role] of Object.entries(k8sRoles)) {
    assert.ok(
      (k8s.patches as Obj[]).some((p) => p.path === file),
      `the overlay applies ${file}`,
    );
    const pod = yaml(`infra/k8s/secure/${file}`).spec.template.spec as Obj;
    const secret = pod.volumes[0].secret.secretName as string;
    onlyOwn(`k8s ${file}`, role, secrets.get(secret) ?? []);
    const env = Object.fromEntries((pod.containers[0].env as Obj[]).map((e) => [e.name, e.value]));
    assert.equal(env.NATS_INBOX_PREFIX, inboxPrefix(role));
    assert.ok(String(env.NATS_CREDS).startsWith(pod.containers[0].volumeMounts[0].mountPath));
  }
  assert.ok(!(secrets.get('dalle-nats-server') ?? []).some((f) => /\.creds$|\.nk$/.test(f)));
});
