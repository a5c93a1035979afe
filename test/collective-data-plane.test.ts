// The collective's data plane (collective/data-plane.ts) speaks plain NATS: what nats.js publishes it
// receives byte for byte (headers included, payloads larger than one socket read), what it publishes
// nats.js receives, and it opens with the credentials of the connection it sits beside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { connect, headers, type NatsConnection } from 'nats';
import { openDataPlane } from '../collective/data-plane.ts';
import { NATS_URL, uniqueId } from './collective-helpers.ts';

test('collective: the data plane and nats.js exchange the same bytes and headers, both ways', async () => {
  const nc = await connect({ servers: NATS_URL });
  const dp = await openDataPlane(nc, 'test');
  try {
    assert.ok(dp, 'the data plane opens on a plain connection');
    const subject = `dalle.${uniqueId('dp')}.x`;
    // sizes: empty, small, and larger than several socket reads (just under the default max_payload)
    const payloads = [new Uint8Array(0), randomBytes(10), randomBytes(1_000_000)].map(
      (b) => new Uint8Array(b),
    );
    const got: { data: Uint8Array; meta?: string; transient: boolean }[] = [];
    const all = new Promise<void>((resolve) =>
      dp.subscribe(`${subject}.*`, (_s, header, data, transient) => {
        got.push({ data: data.slice(), meta: header('dalle-meta'), transient });
        if (got.length === payloads.length) resolve();
      }),
    );
    await dp.flush();
    for (const [i, p] of payloads.entries()) {
      const h = headers();
      h.set('dalle-meta', `m ${i}`);
      nc.publish(`${subject}.${i}`, p, { headers: h });
    }
    await all;
    for (const [i, p] of payloads.entries()) {
      assert.deepEqual(got[i]!.data, p, `message ${i}: same bytes`);
      assert.equal(got[i]!.meta, `m ${i}`);
      assert.equal(got[i]!.transient, true);
    }

    const back = new Promise<{ data: Uint8Array; meta?: string }>((resolve) =>
      nc.subscribe(`${subject}.back`, {
        max: 1,
        callback: (_e, m) => resolve({ data: m.data, meta: m.headers?.get('dalle-meta') }),
      }),
    );
    await nc.flush();
    const big = payloads[2]!;
    dp.publish(`${subject}.back`, [['dalle-meta', 'back']], big);
    await dp.drained();
    const b = await back;
    assert.deepEqual(b.data, big, 'nats.js receives what the data plane sent');
    assert.equal(b.meta, 'back');
  } finally {
    dp?.close();
    await nc.close();
  }
});

test('collective: the data plane opens with the credentials of the connection beside it', async () => {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
  const bin =
    process.env.DALLE_NATS_BIN ??
    (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');
  const server = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '--auth', 's3cret'], { stdio: 'ignore' });
  let nc: NatsConnection | undefined;
  try {
    for (let i = 0; i < 50 && !nc; i++) {
      nc = await connect({ servers: `nats://127.0.0.1:${port}`, token: 's3cret', reconnect: false }).catch(
        () => undefined,
      );
      if (!nc) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(nc, 'nats-server with token auth started');
    const dp = await openDataPlane(nc, 'test');
    assert.ok(dp, 'authenticated with the same token');
    const got = new Promise<Uint8Array>((resolve) => dp.subscribe('t.x', (_s, _h, d) => resolve(d.slice())));
    await dp.flush();
    nc.publish('t.x', new Uint8Array([1, 2, 3]));
    assert.deepEqual(await got, new Uint8Array([1, 2, 3]));
    dp.close();
  } finally {
    await nc?.close();
    server.kill();
  }
});
