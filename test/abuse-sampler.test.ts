// abuse: the sampler against a poisoned or absent store. `dalle sampler` as a process on a nats-server of
// the test's own: junk under the models key (it used to crash the sampler on every start), NATS gone for
// 60 s (NOT_SERVING while away, then it catches up with what was published meanwhile); in process: a
// corrupt bundle is DATA_LOSS, and a pinned version is admitted before anything loads.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { connect, type NatsConnection } from 'nats';
import { checkHealth } from '../infra/docker/grpc-health.ts';
import { createSamplerClient, generate, listModels } from '../services/sampler/client.ts';
import { openModelStore } from '../store/index.ts';
import { CLI } from './fixtures/cluster.ts';
import { freePort } from './fixtures/secured-stack.ts';
import { startSampler, waitFor } from './fixtures/sampler-harness.ts';
import { makeTinyBundle, publishTinyBundle } from './fixtures/tiny-bundle.ts';

interface NatsServer {
  url: string;
  start(): Promise<void>;
  kill(): Promise<void>;
}

/** A nats-server -js of this test's own, restartable on the same port and store. */
async function ownNats(): Promise<NatsServer & { cleanup(): void }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'abuse-nats-'));
  const url = `nats://127.0.0.1:${port}`;
  let proc: ChildProcess | undefined;
  const s = {
    url,
    async start() {
      proc = spawn('nats-server', ['-js', '-a', '127.0.0.1', '-p', String(port), '-sd', dir], {
        stdio: 'ignore',
      });
      await waitFor(
        () =>
          connect({ servers: url, reconnect: false }).then(
            (nc) => nc.close().then(() => true),
            () => false,
          ),
        'nats-server to accept connections',
        20_000,
      );
    },
    async kill() {
      const p = proc!;
      if (p.exitCode !== null) return;
      await new Promise((r) => {
        p.once('exit', r);
        p.kill('SIGKILL');
      });
    },
    cleanup() {
      proc?.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  await s.start();
  return s;
}

function startSamplerProcess(natsUrl: string) {
  const p = spawn(process.execPath, [CLI, 'sampler', '--port', '0'], {
    env: { ...process.env, NATS_URL: natsUrl, DALLE_SAMPLER_ADDRESS: '127.0.0.1:0', DALLE_BACKEND: 'wasm' },
  });
  let err = '';
  let out = '';
  p.stderr.on('data', (b) => (err += b));
  p.stdout.on('data', (b) => (out += b));
  return {
    p,
    logs: () => out + err,
    address: () => `127.0.0.1:${/listening on 127\.0\.0\.1:(\d+)/.exec(err)?.[1]}`,
    alive: () => p.exitCode === null && p.signalCode === null,
    /** SIGTERM (a graceful stop must finish within 20 s, or the test fails after killing it). */
    stop: () =>
      new Promise<void>((resolve, reject) => {
        if (p.exitCode !== null || p.signalCode !== null) return resolve();
        const t = setTimeout(() => {
          p.kill('SIGKILL');
          reject(new Error('the sampler did not stop within 20 s of SIGTERM'));
        }, 20_000);
        p.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        p.kill('SIGTERM');
      }),
  };
}

async function junkLatest(url: string, text: string): Promise<void> {
  const nc = await connect({ servers: url });
  const kv = await nc.jetstream().views.kv('dalle-models');
  await kv.put('dalle.latest', new TextEncoder().encode(text));
  await nc.close();
}

async function publish(url: string, seed: number): Promise<number> {
  const nc: NatsConnection = await connect({ servers: url });
  try {
    return (await publishTinyBundle(await openModelStore({ nc }), 'dalle', { seed })).version;
  } finally {
    await nc.close();
  }
}

test('abuse: junk under the models key never crashes dalle sampler; NATS away 60 s → NOT_SERVING, then it catches up', async () => {
  const nats = await ownNats();
  let sampler = startSamplerProcess(nats.url);
  const health = async () => (await checkHealth(sampler.address())).status;
  const servingVersion = async () => {
    const c = createSamplerClient(sampler.address(), {});
    try {
      return (await listModels(c)).models.find((m) => m.name === 'dalle')?.servingVersion;
    } catch (e) {
      // while the sampler's NATS connection comes back, reading the store is UNAVAILABLE: not yet
      if ((e as { code?: number }).code === grpc.status.UNAVAILABLE) return undefined;
      throw e;
    } finally {
      c.close();
    }
  };
  try {
    const step = (m: string) => process.stderr.write(`[abuse-sampler] ${m}\n`);
    step('publish v1');
    assert.equal(await publish(nats.url, 1), 1);
    await waitFor(() => sampler.logs().includes('"model serving"'), `v1 to serve: ${sampler.logs()}`, 90_000);

    step('junk');
    await junkLatest(nats.url, '{ this is not json');
    await waitFor(
      () => sampler.logs().includes('skipping a corrupt model record'),
      'the junk to be reported',
      10_000,
    );
    assert.ok(sampler.alive(), 'the sampler survived the junk');
    assert.equal(await health(), 'SERVING');

    step('kill nats');
    const down = Date.now();
    await nats.kill();
    step('killed');
    await waitFor(async () => (await health()) === 'NOT_SERVING', 'NOT_SERVING while NATS is away', 15_000);
    step('not serving');
    const c = createSamplerClient(sampler.address(), {});
    const r = await generate(c, { prompt: 'a red circle', numImages: 1 }, { deadline: Date.now() + 60_000 });
    c.close();
    assert.equal(r.images.length, 1, 'what it holds it still serves');
    await new Promise((res) => setTimeout(res, Math.max(0, 60_000 - (Date.now() - down))));
    assert.ok(sampler.alive(), 'alive after 60 s without NATS');

    step('restart nats');
    await nats.start();
    assert.equal(await publish(nats.url, 2), 2, 'the version after the junk');
    step('published v2');
    await waitFor(async () => (await servingVersion()) === 2, 'the sampler to catch up with v2', 60_000);
    await waitFor(async () => (await health()) === 'SERVING', 'SERVING again', 15_000);

    step('restart sampler with junk');
    // A restart while the key holds junk starts (and waits) instead of crashing.
    await junkLatest(nats.url, 'null]');
    await sampler.stop();
    sampler = startSamplerProcess(nats.url);
    await waitFor(
      () => sampler.logs().includes('skipping a corrupt model record'),
      'junk reported at start',
      60_000,
    );
    assert.ok(sampler.alive());
    // The junk can be read before the port is bound (the log says so first), so the health answer is waited for.
    await waitFor(async () => (await health()) === 'NOT_SERVING', 'NOT_SERVING with junk at start', 15_000);
    assert.equal(await publish(nats.url, 3), 3);
    await waitFor(async () => (await health()) === 'SERVING', 'v3 to serve', 90_000);
  } finally {
    await sampler.stop();
    nats.cleanup();
  }
});

test('abuse: a corrupt bundle is DATA_LOSS and never replaces the serving model; a pinned version is admitted before it loads', async () => {
  const { bytes } = await makeTinyBundle();
  let loads = 0;
  const { loadBundleModel } = await import('../services/sampler/tf-engine.ts');
  const h = await startSampler({
    loader: (b, v) => {
      loads++;
      return loadBundleModel(b, v);
    },
    scheduler: { maxConcurrent: 1, maxQueue: 0 },
  });
  try {
    await h.models.publish('dalle', bytes);
    await h.svc.registry.waitForServing(1, 60_000);
    const junk = Uint8Array.from(bytes);
    junk.set([0xff, 0xff, 0xff, 0x00], 'DALLESEC1'.length); // a header length far past the end
    await h.models.publish('dalle', junk);
    await waitFor(() => h.svc.registry.loadFailures.length === 1, 'the corrupt v2 to fail its load', 30_000);
    assert.equal(h.svc.registry.servingFacts('dalle')?.version, 1, 'v1 still serves');
    const call = (version?: number) =>
      generate(h.client, { prompt: 'a red circle', numImages: 1, model: { name: 'dalle', version } });
    await assert.rejects(call(2), (e: grpc.ServiceError) => {
      assert.equal(e.code, grpc.status.DATA_LOSS, e.details);
      return true;
    });

    // Capacity full (one place held): a pinned version nobody holds is refused before it loads.
    const before = loads;
    const place = h.svc.scheduler.reserve();
    await assert.rejects(call(1), (e: grpc.ServiceError) => e.code === grpc.status.RESOURCE_EXHAUSTED);
    await assert.rejects(call(2), (e: grpc.ServiceError) => e.code === grpc.status.RESOURCE_EXHAUSTED);
    assert.equal(loads, before, 'nothing was loaded for refused requests');
    place.release();
    assert.equal((await call(1)).images.length, 1);
  } finally {
    await h.close();
  }
});
