// powersgd.stages: a run compresses only the stages it names. Two ranks of the tiny dVAE and of the tiny
// transformer in this process, over a real nats-server, with PowerSGD on from the first update and
// `stages: ['transformer']`: the dVAE's ranks all-reduce every gradient byte uncompressed, the transformer's
// send less than they would raw. And a spec without the field keeps the hash it had before the field existed
// (every stage compressed, no key written).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, resolveSpec, specHash } from '../config/index.ts';
import { stagePowerSgd } from '../contract/index.ts';
import { initTfBackend, type DvaeBatch } from '../model/index.ts';
import { openStores } from '../store/index.ts';
import { closeRanks, openRanks, trainRanks } from '../bench/lib/in-process-ranks.ts';
import { NATS_URL, uniqueId } from './collective-helpers.ts';

await initTfBackend('wasm');

const powersgd = { enabled: true, rank: 2, startIter: 0, minCompressionRate: 1 };

/** Two images a rank of arbitrary pixels (what is learned does not matter here, only what is sent). */
function images(resolution: number, step: number, rank: number): DvaeBatch {
  const n = 2;
  const px = new Uint8Array(n * resolution * resolution * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 31 + step * 7 + rank * 13) % 256;
  return { images: px, n, first: rank * n };
}

test('powersgd.stages: only the named stages are compressed; the others all-reduce every byte', async () => {
  const spec = resolveSpec({
    preset: 'tiny',
    powersgd: { ...powersgd, stages: ['transformer'] },
    train: { worldSize: 2 },
  });
  const checkpoints = (await openStores({ dir: mkdtempSync(join(tmpdir(), 'psgd-stages-')) })).checkpoints;
  const sent = async (stage: 'dvae' | 'transformer') => {
    const ranks = await openRanks({
      url: NATS_URL,
      spec,
      stage,
      worldSize: 2,
      checkpoints,
      runId: uniqueId(`stages-${stage}`),
    });
    try {
      const steps = await trainRanks(
        ranks,
        spec,
        0,
        2,
        stage === 'dvae' ? (s, r) => images(spec.dvae.resolution, s, r) : undefined,
      );
      return steps.flatMap((s) => s.ranks.map((o) => ({ raw: o.bytesRaw, sent: o.bytesSent })));
    } finally {
      await closeRanks(ranks);
    }
  };
  const dvae = await sent('dvae');
  assert.equal(dvae.length, 4);
  for (const b of dvae) {
    assert.ok(b.raw > 0);
    assert.equal(b.sent, b.raw, 'the dVAE is not in powersgd.stages: nothing compressed');
  }
  const transformer = await sent('transformer');
  for (const b of transformer)
    assert.ok(b.sent < b.raw, `transformer compressed: ${b.sent} < ${b.raw} bytes`);
});

test('powersgd.stages: absent means every stage and leaves the spec hash alone; bad lists are refused', () => {
  const plain = resolveSpec({ preset: 'tiny', powersgd });
  assert.equal('stages' in plain.powersgd, false, 'no key written when the field is absent');
  for (const stage of ['dvae', 'transformer', 'rerank'] as const)
    assert.equal(stagePowerSgd(plain, stage).enabled, true);
  const named = resolveSpec({ preset: 'tiny', powersgd: { ...powersgd, stages: ['transformer', 'rerank'] } });
  assert.equal(stagePowerSgd(named, 'dvae').enabled, false);
  assert.equal(stagePowerSgd(named, 'rerank').enabled, true);
  assert.notEqual(specHash(named), specHash(plain), 'which stages are compressed is part of the run');
  const off = resolveSpec({ preset: 'tiny', powersgd: { ...powersgd, enabled: false, stages: ['dvae'] } });
  assert.equal(stagePowerSgd(off, 'dvae').enabled, false, 'enabled: false wins');

  assert.throws(
    () => resolveSpec({ preset: 'tiny', powersgd: { stages: ['vae'] } }),
    (e: unknown) => e instanceof ConfigError && /powersgd\.stages/.test(e.message),
  );
  assert.throws(
    () => resolveSpec({ preset: 'tiny', powersgd: { stages: ['dvae', 'dvae'] } }),
    (e: unknown) => e instanceof ConfigError && /each stage at most once/.test(e.message),
  );
});
