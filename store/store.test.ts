// store: the same behaviour from the JetStream backend (real nats-server) and the local folder.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { connect, type NatsConnection } from 'nats';
import { serviceEnv } from '../infra/services.ts';
import {
  CorruptModelError,
  openStores,
  packSections,
  unpackSections,
  BadContainerError,
  NoVerifiedCheckpointError,
  sha256,
} from './index.ts';

const bytes = (n: number, seed: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 255);

async function withStores(
  kind: 'nats' | 'folder',
  fn: (s: Awaited<ReturnType<typeof openStores>>, fallbacks: string[]) => Promise<void>,
) {
  const fallbacks: string[] = [];
  const onFallback = (f: { badStep: number; usingStep: number | undefined; reason: string }) =>
    fallbacks.push(`${f.badStep}->${f.usingStep}: ${f.reason}`);
  let nc: NatsConnection | undefined;
  try {
    if (kind === 'nats') nc = await connect({ servers: serviceEnv().natsUrl });
    const s = await openStores(nc ? { nc } : { dir: mkdtempSync(join(tmpdir(), 'store-')) }, {
      keep: 2,
      onFallback,
    });
    await fn(s, fallbacks);
  } finally {
    await nc?.close();
  }
}

for (const kind of ['nats', 'folder'] as const) {
  test(`store: ${kind} two-phase commit, sha256 fallback on a flipped byte, pruning keeps K`, async () => {
    await withStores(kind, async ({ checkpoints: ck }, fallbacks) => {
      const run = `run-${kind}-${process.pid}-${Date.now()}`;
      assert.equal(await ck.resolve(run, 'dvae'), undefined, 'fresh run has no checkpoint');
      for (const step of [5, 10, 15]) {
        const parts = [
          await ck.putPart(run, 'dvae', step, 'params', bytes(3000, step)),
          await ck.putPart(run, 'dvae', step, 'rank1', bytes(100, step + 1)),
          await ck.putPart(run, 'dvae', step, 'samples', bytes(50, step + 2)),
        ];
        assert.equal(parts[0]!.sha256, sha256(bytes(3000, step)));
        await ck.commit({ runId: run, stage: 'dvae', step, parts, meta: { loss: step } });
      }
      // Parts of an uncommitted step (a segment in flight) are invisible to readers.
      await ck.putPart(run, 'dvae', 20, 'params', bytes(10, 20));
      assert.equal((await ck.resolve(run, 'dvae'))?.step, 15);
      assert.deepEqual(await ck.committedSteps(run, 'dvae'), [10, 15], 'keep=2 pruned step 5');
      assert.equal(await ck.backend.getObject(ck.partKey(run, 'dvae', 5, 'params')), undefined);
      // Sample grids outlive their pruned checkpoint.
      assert.deepEqual(
        (await ck.partsNamed(run, 'dvae', 'samples')).map((p) => p.step),
        [5, 10, 15],
      );
      assert.deepEqual(await ck.backend.getObject(ck.partKey(run, 'dvae', 5, 'samples')), bytes(50, 7));

      // A flipped byte in the newest committed part: detected, previous checkpoint used, and said so.
      const key = ck.partKey(run, 'dvae', 15, 'params');
      const bad = bytes(3000, 15);
      bad[1234]! ^= 0x40;
      await ck.backend.putObject(key, bad);
      const m = await ck.resolve(run, 'dvae');
      assert.equal(m?.step, 10);
      assert.equal(fallbacks.length, 1);
      assert.match(fallbacks[0]!, /^15->10: checkpoint part .*params: sha256 [0-9a-f]{64} does not match/);
      assert.deepEqual(await ck.loadPart(m!, 'params'), bytes(3000, 10));

      // A missing part is a fallback too; with nothing left that verifies, resolving refuses to start over.
      await ck.backend.deleteObject(ck.partKey(run, 'dvae', 10, 'rank1'));
      await assert.rejects(ck.resolve(run, 'dvae'), NoVerifiedCheckpointError);
      assert.match(fallbacks[2]!, /missing/);
    });
  });

  test(`store: ${kind} model versions, verified load, watch sees a publish`, async () => {
    await withStores(kind, async ({ models }) => {
      const name = `m-${kind}-${process.pid}-${Date.now()}`;
      const seen: number[] = [];
      const v1 = await models.publish(name, bytes(500, 1), { preset: 'tiny' });
      const stop = await models.watch(name, (i) => seen.push(i.version));
      const v2 = await models.publish(name, bytes(600, 2));
      assert.deepEqual([v1.version, v2.version], [1, 2]);
      assert.deepEqual((await models.load(name)).bundle, bytes(600, 2));
      assert.deepEqual((await models.load(name, 1)).bundle, bytes(500, 1));
      const deadline = Date.now() + 5000;
      while (!seen.includes(2) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      await stop();
      assert.ok(seen.includes(2), `watch saw ${seen}`);
      assert.ok((await models.names()).includes(name));
      await models.backend.putObject(`models/${name}/2`, bytes(600, 3));
      await assert.rejects(models.load(name), CorruptModelError);
      await assert.rejects(
        models.load('nope-never-published'),
        /no published model named 'nope-never-published'/,
      );
    });
  });
}

test('store: section containers round-trip and reject truncation', () => {
  const packed = packSections({
    a: bytes(10, 1),
    'spec.json': new TextEncoder().encode('{"x":1}'),
    empty: new Uint8Array(0),
  });
  const back = unpackSections(packed);
  assert.deepEqual(back.a, bytes(10, 1));
  assert.equal(new TextDecoder().decode(back['spec.json']), '{"x":1}');
  assert.equal(back.empty!.length, 0);
  assert.throws(() => unpackSections(packed.subarray(0, packed.length - 1)), BadContainerError);
  assert.throws(() => unpackSections(bytes(40, 0)), BadContainerError);
});
