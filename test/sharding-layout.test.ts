// sharding: 2 hosts × 2 ranks in this process, over a real nats-server, with the tiny transformer. Sharded
// within hosts (reduce-scatter, a shard of AdamW per rank, all-gather) it trains like the flat layout when
// nothing is compressed; with PowerSGD between hosts each rank holds about half the optimizer and
// error-buffer state; and a checkpoint of 2 hosts resumes on the 1 host that is left (error buffers
// re-sharded to the hosts' mean, optimizer shards loaded as saved). The reranker, whose ranks also exchange
// their pair embeddings, trains there like on 4 flat ranks and publishes EMA weights from its shards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveSpec } from '../config/index.ts';
import { openDataset, trainTokenizer } from '../data/index.ts';
import { initTfBackend, transformerParamSpecs } from '../model/index.ts';
import { openStores } from '../store/index.ts';
import { saveCheckpoint } from '../activities/checkpoint-commit.ts';
import { rerankBatches } from '../activities/batches.ts';
import { emaParams } from '../activities/ema-params.ts';
import type { ShardedRuntime } from '../activities/sharded-runtime.ts';
import { planLayout } from '../activities/layout-plan.ts';
import { closeRanks, openRanks, trainRanks } from '../bench/lib/in-process-ranks.ts';
import { NATS_URL, uniqueId } from './collective-helpers.ts';

await initTfBackend('wasm');

const maxAbs = (a: Float32Array[], b: Float32Array[]) =>
  Math.max(...a.map((x, i) => Math.max(...x.map((v, k) => Math.abs(v - b[i]![k]!)))));
const store = async () => (await openStores({ dir: mkdtempSync(join(tmpdir(), 'shard-')) })).checkpoints;

test('sharding: 2 hosts × 2 ranks without compression train like 4 flat ranks', async () => {
  const spec = resolveSpec({ preset: 'tiny', powersgd: { enabled: false }, train: { worldSize: 4 } });
  const checkpoints = await store();
  const flat = await openRanks({ url: NATS_URL, spec, checkpoints, runId: uniqueId('flat') });
  const sharded = await openRanks({
    url: NATS_URL,
    spec,
    hostIds: ['a', 'b', 'a', 'b'],
    checkpoints,
    runId: uniqueId('sh'),
  });
  try {
    const lf = await trainRanks(flat, spec, 0, 4);
    const ls = await trainRanks(sharded, spec, 0, 4);
    const params = sharded.trainers.map((t) => t.exportParams('params'));
    for (const p of params.slice(1))
      assert.equal(maxAbs(params[0]!, p), 0, 'every rank gathers the same bits');
    const diff = maxAbs(flat.trainers[0]!.exportParams('params'), params[0]!);
    assert.ok(diff < 1e-5, `parameters differ by ${diff} (only the order of float additions differs)`);
    lf.forEach((l, i) =>
      assert.ok(Math.abs(l.loss - ls[i]!.loss) < 1e-5 * l.loss, `step ${i}: ${l.loss} vs ${ls[i]!.loss}`),
    );
    assert.ok(ls.at(-1)!.loss < ls[0]!.loss, 'it learns');
  } finally {
    await closeRanks(flat);
    await closeRanks(sharded);
  }
});

test('sharding: with PowerSGD between hosts a rank holds half the state, and a lost host resumes on one', async (t) => {
  const spec = resolveSpec({ preset: 'tiny', powersgd: { startIter: 0 }, train: { worldSize: 4 } });
  const checkpoints = await store();
  const runId = uniqueId('host-lost');
  const flat = await openRanks({ url: NATS_URL, spec, checkpoints, runId: uniqueId('flat') });
  const two = await openRanks({ url: NATS_URL, spec, hostIds: ['a', 'b', 'a', 'b'], checkpoints, runId });
  try {
    await trainRanks(flat, spec, 0, 3);
    await trainRanks(two, spec, 0, 3);
    const [mf, ms] = [flat.runtimes[0]!.memory(), two.runtimes[0]!.memory()];
    t.diagnostic(`bytes per rank, flat vs sharded: ${JSON.stringify(mf)} vs ${JSON.stringify(ms)}`);
    assert.equal(ms.params, mf.params);
    const host = two.runtimes[0]!.memory().optimizer + two.runtimes[2]!.memory().optimizer;
    assert.equal(host, (4 / 3) * mf.optimizer, "a host's two ranks: m, v, EMA and master values once");
    assert.ok(ms.optimizer < 0.75 * mf.optimizer, 'each about half of that');
    assert.ok(ms.powersgd < 0.75 * mf.powersgd, 'error buffers of half the rows');
    // `dalle config plan` counts from the shapes alone what the runtimes hold.
    const plan = planLayout(transformerParamSpecs(spec.transformer, spec.dvae), spec.powersgd, 2, 2);
    const held = ({ params, grads, optimizer, powersgd }: typeof ms) => ({
      params,
      grads,
      optimizer,
      powersgd,
    });
    assert.deepEqual(held(plan.flat), mf, 'the plan of the flat layout');
    const sum = (m: typeof ms) => m.params + m.grads + m.optimizer + m.powersgd;
    const largest = two.runtimes.map((r) => r.memory()).reduce((a, m) => (sum(m) > sum(a) ? m : a));
    assert.deepEqual(held(plan.sharded), largest, 'the plan of the sharded layout: its largest rank');

    const facts = { step: 3, loss: 1, losses: [1, 1, 1], backend: 'wasm', resizeTo: 0 };
    await Promise.all(
      two.groups.map((g, r) => saveCheckpoint(checkpoints, two.inputs[r]!, two.runtimes[r]!, g, facts)),
    );
    const m = (await checkpoints.manifestAt(runId, 'transformer', 3))!;
    assert.deepEqual(m.parts.map((p) => p.name).sort(), [
      'opt0',
      'opt1',
      'params',
      'rank0',
      'rank1',
      'rank2',
      'rank3',
    ]);
    assert.deepEqual(m.meta.layout, {
      kind: 'host',
      hosts: 2,
      perHost: 2,
      hostOf: [0, 1, 0, 1],
      localOf: [0, 0, 1, 1],
    });

    // Host b is gone: the two ranks of host a resume from the checkpoint on their own.
    const one = await openRanks({
      url: NATS_URL,
      spec,
      hostIds: ['a', 'a'],
      checkpoints,
      runId,
      fromStep: 3,
    });
    try {
      const before = (two.runtimes as ShardedRuntime[]).map((r) => r.s);
      const after = (one.runtimes as ShardedRuntime[]).map((r) => r.s);
      const name = after[1]!.pieces.find((p) => after[1]!.psgd.errorBuffer(p.name))!.name;
      const [e0, e1] = [before[2]!.psgd.errorBuffer(name)!, before[3]!.psgd.errorBuffer(name)!];
      after[1]!.psgd.errorBuffer(name)!.forEach((v, i) => {
        const mean = (e0[i]! + e1[i]!) / 2;
        assert.ok(Math.abs(v - mean) <= 1e-7 * (1 + Math.abs(v)), `${name}[${i}]: the hosts' mean`);
      });
      assert.deepEqual(after[1]!.opt.emaPieces(), before[2]!.opt.emaPieces(), 'optimizer shard 1 as saved');
      const losses = (await trainRanks(one, spec, 3, 5)).map((s) => s.loss);
      assert.ok(losses.every(Number.isFinite), `${losses}`);
    } finally {
      await closeRanks(one);
    }
  } finally {
    await closeRanks(flat);
    await closeRanks(two);
  }
});

test('sharding: the reranker on 2 hosts × 2 ranks trains like 4 flat ranks and publishes from its shards', async () => {
  const spec = resolveSpec({ preset: 'tiny', powersgd: { enabled: false }, train: { worldSize: 4 } });
  const ds = await openDataset(spec.dataset);
  const source = rerankBatches(spec, ds, await trainTokenizer(ds, spec.transformer.vocabSize));
  const checkpoints = await store();
  const runId = uniqueId('rerank-sh');
  const flat = await openRanks({ url: NATS_URL, spec, checkpoints, runId: uniqueId('rerank-flat'), source });
  const two = await openRanks({
    url: NATS_URL,
    spec,
    hostIds: ['a', 'b', 'a', 'b'],
    checkpoints,
    runId,
    source,
  });
  try {
    const lf = await trainRanks(flat, spec, 0, 4);
    const ls = await trainRanks(two, spec, 0, 4);
    lf.forEach((l, i) =>
      assert.ok(Math.abs(l.loss - ls[i]!.loss) < 1e-5 * l.loss, `step ${i}: ${l.loss} vs ${ls[i]!.loss}`),
    );
    assert.ok(ls.at(-1)!.loss < ls[0]!.loss, 'it learns');
    const params = two.trainers.map((t) => t.exportParams('params'));
    for (const p of params.slice(1))
      assert.equal(maxAbs(params[0]!, p), 0, 'every rank gathers the same bits');
    const diff = maxAbs(flat.trainers[0]!.exportParams('params'), params[0]!);
    assert.ok(diff < 1e-5, `parameters differ by ${diff}`);

    const facts = { step: 4, loss: 1, losses: [1, 1, 1, 1], backend: 'wasm', resizeTo: 0 };
    await Promise.all(
      two.groups.map((g, r) => saveCheckpoint(checkpoints, two.inputs[r]!, two.runtimes[r]!, g, facts)),
    );
    const m = (await checkpoints.manifestAt(runId, 'rerank', 4))!;
    const ema = await emaParams(checkpoints, m, 'rerank', spec);
    const emaDiff = maxAbs(flat.trainers[0]!.exportParams('ema'), ema);
    assert.ok(emaDiff < 1e-5, `EMA weights from the shards differ from the flat ranks' by ${emaDiff}`);
  } finally {
    await closeRanks(flat);
    await closeRanks(two);
  }
});
