// security: a stack started with `dalle up --secure` refuses strangers on every service, confines each role
// to what it needs, and still trains and serves; the same probes against the suite's unsecured stack show
// what the default (loopback only) still allows.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { Connection } from '@temporalio/client';
import { connect, credsAuthenticator, type NatsConnection } from 'nats';
import { createSamplerClient, generate } from '../services/sampler/client.ts';
import { SamplerService } from '../services/sampler/server.ts';
import { connectNats } from '../security/nats.ts';
import { mintRankCredentials } from '../security/run-credentials.ts';
import {
  natsSecurity,
  samplerClientSecurity,
  samplerServerSecurity,
  temporalSecurity,
} from '../security/settings.ts';
import { temporalConnectionOptions } from '../security/temporal.ts';
import { openModelStore } from '../store/index.ts';
import { dalle, dalleAsync, startWorker, writeSpec, type WorkerProc } from './fixtures/cluster.ts';
import { startSecuredStack, type SecuredStack } from './fixtures/secured-stack.ts';

let stack: SecuredStack;
before(async () => {
  stack = await startSecuredStack();
});
after(() => stack?.down());

const refusal = (p: Promise<unknown>) =>
  p.then(
    () => 'connected',
    (e: Error & { code?: string }) => e.code ?? e.message,
  );

/** Messages `sub` receives within `ms`. */
async function received(nc: NatsConnection, subject: string, act: () => Promise<void>, ms = 500) {
  const got: string[] = [];
  const sub = nc.subscribe(subject, { callback: (_e, m) => got.push(m.subject) });
  await nc.flush();
  await act();
  await new Promise((r) => setTimeout(r, ms));
  sub.unsubscribe();
  return got;
}

test('security: anonymous, certificate-less and credential-less NATS clients are refused (the unsecured default accepts them)', async () => {
  const admin = stack.env('admin');
  const url = admin.NATS_URL!;
  const plainUrl = url.replace('tls://', 'nats://');
  assert.notEqual(
    await refusal(connect({ servers: plainUrl, reconnect: false, timeout: 3000 })),
    'connected',
  );
  const noCert = await refusal(
    connect({ servers: url, reconnect: false, timeout: 3000, tls: { caFile: admin.NATS_CA } }),
  );
  assert.match(noCert, /CERT|certificate/i, 'TLS without a client certificate fails the handshake');
  const noCreds = await refusal(
    connect({
      servers: url,
      reconnect: false,
      timeout: 3000,
      tls: { caFile: admin.NATS_CA, certFile: admin.NATS_CERT, keyFile: admin.NATS_KEY },
    }),
  );
  assert.equal(noCreds, 'AUTHORIZATION_VIOLATION', 'a certificate alone is not a user');

  // The suite's own stack is the unsecured default: the same stranger reads every run's traffic.
  const anon = await connect({ servers: process.env.NATS_URL, reconnect: false });
  try {
    const got = await received(anon, 'dalle.>', async () => anon.publish('dalle.somerun.g0.rs.1.0', 'x'));
    assert.deepEqual(got, ['dalle.somerun.g0.rs.1.0'], 'unsecured: anyone may read and write run subjects');
    // …and publish a model that every sampler of that name would then swap to.
    const models = await openModelStore({ nc: anon });
    const forged = await models.publish(`stranger-${process.pid}`, new Uint8Array([1, 2, 3]));
    assert.equal(forged.version, 1, 'unsecured: anyone may publish a model');
  } finally {
    await anon.close();
  }
});

test('security: a rank user minted for run A publishes and reads only run A; the sampler only reads models', async () => {
  const adminNc = await connectNats({ reconnect: false }, natsSecurity(stack.env('admin')));
  const workerSec = natsSecurity(stack.env('worker'));
  const rankNc = await connectNats(
    {
      reconnect: false,
      authenticator: credsAuthenticator(await mintRankCredentials('runA', workerSec)),
      inboxPrefix: '_INBOX_runA',
    },
    workerSec,
  );
  const samplerNc = await connectNats({ reconnect: false }, natsSecurity(stack.env('sampler')));
  const workerNc = await connectNats({ reconnect: false }, workerSec);
  try {
    const ownRun = await received(adminNc, 'dalle.>', async () => {
      rankNc.publish('dalle.runA.g0.rs.1.0', 'mine');
      rankNc.publish('dalle.runB.g0.rs.1.0', 'forged');
      workerNc.publish('dalle.runA.g0.rs.1.1', 'not a rank');
      samplerNc.publish('dalle.runA.g0.rs.1.2', 'not a rank');
      await Promise.all([rankNc.flush(), workerNc.flush(), samplerNc.flush()]);
    });
    assert.deepEqual(ownRun, ['dalle.runA.g0.rs.1.0'], 'only the rank, only on its own run');

    // Reading another run's traffic is refused too (the subscription is closed with a permissions error).
    const spy = rankNc.subscribe('dalle.runB.>');
    const closed = await Promise.race([
      spy.closed.then(
        () => 'closed',
        (e: Error) => e.message,
      ),
      new Promise((r) => setTimeout(() => r('still open'), 2000)),
    ]);
    assert.match(String(closed), /Permissions Violation|closed/i);

    // The sampler reads the models bucket but cannot publish a model.
    const models = await openModelStore({ nc: samplerNc }, { readOnly: true });
    assert.equal(await models.latest('dalle'), undefined);
    await assert.rejects(models.publish('dalle', new Uint8Array([1, 2, 3])));
    const adminModels = await openModelStore({ nc: adminNc });
    assert.equal(await adminModels.latest('dalle'), undefined, 'nothing was published');
  } finally {
    for (const nc of [adminNc, rankNc, samplerNc, workerNc]) await nc.close().catch(() => undefined);
  }
});

test('security: Temporal behind the mutual-TLS front refuses clients without our certificate', async () => {
  const admin = temporalSecurity(stack.env('admin'));
  const attempt = async (o: Parameters<typeof Connection.connect>[0]) => {
    try {
      const c = await Connection.connect({ connectTimeout: 3000, ...o });
      await c.workflowService.describeNamespace({ namespace: 'default' });
      await c.close();
      return 'ok';
    } catch {
      return 'refused';
    }
  };
  assert.equal(await attempt({ address: admin.address }), 'refused', 'plaintext');
  assert.equal(
    await attempt({ address: admin.address, tls: { ...admin.tls, clientCertPair: undefined } }),
    'refused',
    'TLS without a client certificate',
  );
  assert.equal(await attempt(temporalConnectionOptions(admin)), 'ok');
});

test('security: a run trains, publishes and is served over TLS with per-run rank credentials on the secured stack', async () => {
  const workers: WorkerProc[] = [0, 1].map((i) => startWorker(stack.env('worker'), `sw${i}`));
  let svc: SamplerService | undefined;
  const logged: string[] = [];
  try {
    const spec = writeSpec({
      preset: 'tiny',
      dvae: { steps: 10 },
      transformer: { steps: 10 },
      train: { segmentSteps: 10, checkpointEvery: 5 },
    });
    // Minutes: a tiny run's 40 steps took over 300 s on this 2-core machine at load 25.
    const run = stack.dalle('cli', ['train', '--config', spec, '--run-id', 'secured-run', '--json'], 600_000);
    assert.equal(run.code, 0, `${run.err}\n${workers.flatMap((w) => w.output).join('\n')}`);
    assert.equal(JSON.parse(run.out.trim().split('\n').pop()!).model.version, 1);
    // The worker role may not publish on any run's subjects (previous test): the collective ran over the
    // per-run users the workers minted, or the run could not have finished.
    const status = stack.dalle('cli', ['status', 'secured-run', '--json']);
    assert.equal(status.code, 0, status.err);
    assert.equal(JSON.parse(status.out).status, 'completed');

    // The sampler, as the sampler role: mutual TLS and a token.
    const samplerEnv = stack.env('sampler');
    const nc = await connectNats({ reconnect: false }, natsSecurity(samplerEnv));
    svc = new SamplerService({
      store: await openModelStore({ nc }, { readOnly: true }),
      security: samplerServerSecurity(samplerEnv),
      log: (_level, msg, fields) => logged.push(`${msg} ${JSON.stringify(fields ?? {})}`),
    });
    const port = await svc.listen('127.0.0.1:0');
    await svc.registry.waitForServing(1, 60_000);
    const address = `127.0.0.1:${port}`;
    const cli = samplerClientSecurity(stack.env('cli'));
    const call = async (sec: typeof cli) => {
      const client = createSamplerClient(address, sec);
      try {
        return await generate(
          client,
          { prompt: 'a red circle', numImages: 1 },
          { deadline: Date.now() + 60_000 },
        );
      } finally {
        client.close();
      }
    };
    const ok = await call(cli);
    assert.equal(ok.images.length, 1);
    await assert.rejects(call({ ...cli, token: undefined }), (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.UNAUTHENTICATED);
      return true;
    });
    await assert.rejects(
      call({ ...cli, token: 'wrong' }),
      (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED,
    );
    await assert.rejects(
      call({ ...cli, tls: { ...cli.tls!, cert: undefined, key: undefined } }),
      (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE,
      'no client certificate: the handshake fails',
    );
    await assert.rejects(
      call({ token: cli.token }),
      (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE,
    );

    // `dalle generate` as the cli role: server CA, client certificate and token, all from cli.env.
    const out = mkdtempSync(join(tmpdir(), 'dalle-secure-gen-'));
    const args = ['generate', 'a red circle', '-n', '1', '--server', address, '--out', out];
    const gen = await dalleAsync([...args, '--json'], stack.env('cli'));
    assert.equal(gen.code, 0, gen.err);
    assert.equal((JSON.parse(gen.out) as { images: unknown[] }).images.length, 1);
    const tokenless = await dalleAsync(args, { ...stack.env('cli'), DALLE_SAMPLER_TOKEN: '' });
    assert.notEqual(tokenless.code, 0);
    assert.match(tokenless.err, /UNAUTHENTICATED|Bearer/, tokenless.err);
    await nc.close();

    // No process printed a secret: the sampler token, a NATS seed (S…), a user JWT (eyJ…) or a private key.
    const printed = [...workers.flatMap((w) => w.output), ...logged, gen.out, gen.err, tokenless.err].join(
      '\n',
    );
    assert.ok(!printed.includes(cli.token!), 'the sampler token was printed');
    assert.doesNotMatch(printed, /\bS[UAO][A-Z2-7]{40,}|eyJ[\w-]{20,}\.|PRIVATE KEY/);
  } finally {
    await svc?.shutdown(2000);
    await Promise.all(workers.map((w) => w.kill('SIGTERM')));
  }
});

test('security: up --check prints no secret; without --secure, up refuses to listen beyond loopback', () => {
  const check = stack.dalle('admin', ['up', '--check', '--json']);
  assert.equal(check.code, 0, check.err);
  const admin = stack.env('admin');
  assert.ok(JSON.parse(check.out).secure);
  assert.ok(
    !check.out.includes(admin.DALLE_SAMPLER_TOKEN!) && !check.err.includes(admin.DALLE_SAMPLER_TOKEN!),
  );
  const open = stack.dalle('admin', ['up'], 30_000);
  assert.equal(open.code, 2, 'a secured home needs --secure');
  assert.match(open.err, /holds a secured stack/);
  const wide = dalle(['up'], {
    DALLE_HOME: mkdtempSync(join(tmpdir(), 'dalle-wide-')),
    NATS_URL: 'nats://0.0.0.0:4999',
    TEMPORAL_ADDRESS: '127.0.0.1:7999',
  });
  assert.equal(wide.code, 2);
  assert.match(wide.err, /InsecureBind|beyond this machine/);
});
