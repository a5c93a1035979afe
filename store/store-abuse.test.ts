// store: what a stranger or a rotting disk can put in the buckets (a KV value that is not JSON, a forged
// section index, racing publishers, checkpoints that no longer verify) is reported and survived, on the
// JetStream backend (real nats-server) and the local folder alike.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect, type NatsConnection } from 'nats';
import { serviceEnv } from '../infra/services.ts';
import {
  BadContainerError,
  CorruptRecordError,
  NoVerifiedCheckpointError,
  openStores,
  packSections,
  unpackSections,
  type CorruptRecordError as Bad,
} from './index.ts';

const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);
const unique = (what: string) => `${what}-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

async function withStores(
  kind: 'nats' | 'folder',
  fn: (s: Awaited<ReturnType<typeof openStores>>, bad: Bad[]) => Promise<void>,
) {
  const bad: Bad[] = [];
  let nc: NatsConnection | undefined;
  try {
    if (kind === 'nats') nc = await connect({ servers: serviceEnv().natsUrl });
    const at = nc ? { nc } : { dir: mkdtempSync(join(tmpdir(), 'store-abuse-')) };
    await fn(await openStores(at, { keep: 2, onBadRecord: (e) => bad.push(e) }), bad);
  } finally {
    await nc?.close();
  }
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

for (const kind of ['nats', 'folder'] as const) {
  test(`store-abuse: ${kind} a models KV value that is not JSON is reported and skipped by the watch, never a crash`, async () => {
    await withStores(kind, async ({ models }, bad) => {
      const name = unique('poisoned');
      await models.publish(name, bytes(100, 1));
      const seen: number[] = [];
      const stop = await models.watch(name, (v) => seen.push(v.version));
      await until('v1', () => seen.includes(1));
      const key = `${name}.latest`;
      // What an anonymous client could write on the unsecured default: not JSON, then JSON that is not a version.
      await writeRaw(models.backend, key, '{not json');
      await until('the junk to be reported', () => bad.length >= 1);
      await models.backend.kvPut(key, { version: 'nine' });
      await until('the wrong shape to be reported', () => bad.length >= 2);
      assert.ok(bad.every((e) => e instanceof CorruptRecordError && e.key === key));
      await assert.rejects(
        models.latest(name),
        (e: Error) => e instanceof CorruptRecordError && (e as Bad).corrupt,
      );
      // The next honest publish replaces the junk, and the watch (still alive) sees it.
      const v2 = await models.publish(name, bytes(100, 2));
      assert.equal(v2.version, 2, 'the version number comes from the versioned records, not the junk');
      await until('v2', () => seen.includes(2));
      await stop();
      assert.deepEqual(seen, [1, 2]);
    });
  });

  test(`store-abuse: ${kind} concurrent publishes get different versions and nothing is overwritten`, async () => {
    await withStores(kind, async ({ models }) => {
      const name = unique('race');
      const infos = await Promise.all(
        Array.from({ length: 6 }, (_, i) => models.publish(name, bytes(300 + i, i))),
      );
      const versions = infos.map((i) => i.version).sort((a, b) => a - b);
      assert.deepEqual(versions, [1, 2, 3, 4, 5, 6]);
      for (const info of infos) {
        const i = infos.indexOf(info);
        assert.deepEqual(
          (await models.load(name, info.version)).bundle,
          bytes(300 + i, i),
          `v${info.version} intact`,
        );
      }
      assert.equal((await models.latest(name))?.version, 6, 'latest only ever moves forward');
    });
  });

  test(`store-abuse: ${kind} retention never deletes the last verified checkpoint; none verifying fails loudly`, async () => {
    await withStores(kind, async ({ checkpoints: ck }) => {
      const run = unique('rot');
      const commit = async (step: number, rot: boolean) => {
        const part = await ck.putPart(run, 'dvae', step, 'params', bytes(2000, step));
        if (rot) await ck.backend.putObject(ck.partKey(run, 'dvae', step, 'params'), bytes(2000, step + 99));
        await ck.commit({ runId: run, stage: 'dvae', step, parts: [part] });
      };
      await commit(5, false);
      await commit(10, true);
      await commit(15, true); // keep=2 would drop step 5: the only one that verifies
      assert.deepEqual(await ck.committedSteps(run, 'dvae'), [5, 10, 15]);
      assert.equal((await ck.resolve(run, 'dvae'))?.step, 5);

      // The pointer itself rots: the manifests stored beside the parts still lead to step 5.
      await writeRaw(ck.backend, `${run}.dvae.committed`, 'garbage');
      const fallbacks: number[] = [];
      assert.equal((await ck.resolve(run, 'dvae', (f) => fallbacks.push(f.badStep)))?.step, 5);
      assert.deepEqual(fallbacks, [-1, 15, 10]);

      await ck.backend.putObject(ck.partKey(run, 'dvae', 5, 'params'), bytes(2000, 1));
      await assert.rejects(ck.resolve(run, 'dvae'), (e: Error) => {
        assert.ok(e instanceof NoVerifiedCheckpointError);
        assert.match(e.message, /no committed checkpoint verifies .*refusing to start over from step 0/);
        return true;
      });
    });
  });
}

/** Writes bytes that are not JSON under a KV key, as a stranger with write access could. */
async function writeRaw(backend: unknown, key: string, text: string): Promise<void> {
  const b = backend as {
    kind: string;
    kv?: { put(k: string, v: Uint8Array): Promise<unknown> };
    root?: string;
  };
  if (b.kind === 'nats') await b.kv!.put(key, new TextEncoder().encode(text));
  else (await import('node:fs')).writeFileSync(join(b.root!, 'kv', `${key}.json`), text);
}

test('store-abuse: a forged section index (overlap, gap, past the end, duplicate, huge header) is BadContainerError', () => {
  const good = packSections({ a: bytes(10, 1), b: bytes(20, 2) });
  assert.equal(unpackSections(good).b!.length, 20);
  const forge = (index: unknown, total = 30, body = 30) => {
    const header = new TextEncoder().encode(JSON.stringify({ total, index }));
    const out = new Uint8Array(9 + 4 + header.length + body);
    out.set(new TextEncoder().encode('DALLESEC1'));
    new DataView(out.buffer).setUint32(9, header.length, true);
    out.set(header, 13);
    return out;
  };
  const cases: [unknown, RegExp][] = [
    [
      [
        { name: 'a', offset: 0, length: 10 },
        { name: 'b', offset: 5, length: 20 },
      ],
      /does not follow/,
    ],
    [
      [
        { name: 'a', offset: 0, length: 10 },
        { name: 'b', offset: 12, length: 18 },
      ],
      /does not follow/,
    ],
    [[{ name: 'a', offset: 0, length: 40 }], /does not follow|within 30/],
    [
      [
        { name: 'a', offset: 0, length: 10 },
        { name: 'a', offset: 10, length: 20 },
      ],
      /appears twice/,
    ],
    [[{ name: 'a', offset: -1, length: 10 }], /malformed header/],
    [[{ name: 'a', offset: 0, length: 1e300 }], /malformed header|does not follow/],
    [[{ name: 'a', offset: 0, length: 10 }], /cover 10 of 30/],
    ['nope', /malformed header/],
  ];
  for (const [index, re] of cases)
    assert.throws(() => unpackSections(forge(index)), re, JSON.stringify(index));
  const huge = new Uint8Array(64);
  huge.set(new TextEncoder().encode('DALLESEC1'));
  new DataView(huge.buffer).setUint32(9, 0xffffffff, true);
  assert.throws(
    () => unpackSections(huge),
    (e: Error) => e instanceof BadContainerError && /runs past/.test(e.message),
  );
});
