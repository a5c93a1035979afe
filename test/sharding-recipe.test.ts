// sharding: a sharded run keeps the whole recipe and its observability. 2 hosts × 2 ranks of the tiny dVAE
// in this process, over a real nats-server, with dead-code restarts on (the VQ form: nearest-code
// assignment of flat patches leaves most codes unused, where Gumbel noise would pick them all): the ranks sum the codebook
// gradient's row norms between them, restart the same codes as 4 flat ranks do (gathering the codebook's
// values, moments and EMA within the host, rewriting them, keeping their pieces), and rank 0 gathers the
// EMA weights its quality probe and sample grid read at a checkpoint.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveSpec } from '../config/index.ts';
import { initTfBackend, type DvaeBatch, type Trainer } from '../model/index.ts';
import { openStores } from '../store/index.ts';
import { closeRanks, openRanks, trainRanks } from '../bench/lib/in-process-ranks.ts';
import { NATS_URL, uniqueId } from './collective-helpers.ts';

await initTfBackend('wasm');

const maxAbs = (a: Float32Array[], b: Float32Array[]) =>
  Math.max(...a.map((x, i) => Math.max(...x.map((v, k) => Math.abs(v - b[i]![k]!)))));

/** Two images a rank: flat colour patches, so that few codes are picked and many die. */
function patches(resolution: number, step: number, rank: number): DvaeBatch {
  const n = 2;
  const images = new Uint8Array(n * resolution * resolution * 3);
  for (let i = 0; i < images.length; i++) {
    const px = Math.floor(i / 3);
    const quadrant = (px % resolution < resolution / 2 ? 0 : 1) + (px < images.length / 6 ? 0 : 2);
    images[i] = ((quadrant + step + rank) * 97 + (i % 3) * 61) % 256;
  }
  return { images, n, first: rank * n };
}

/** Every sharded rank gathers the same bits, within `tol` of the flat trainer's (only the order of float
 *  additions differs). */
function sameParams(
  flat: { trainers: Trainer<DvaeBatch>[] },
  sharded: { trainers: Trainer<DvaeBatch>[] },
  tol: number,
) {
  const params = sharded.trainers.map((tr) => tr.exportParams('params'));
  for (const p of params.slice(1)) assert.equal(maxAbs(params[0]!, p), 0, 'every rank gathers the same bits');
  const diff = maxAbs(flat.trainers[0]!.exportParams('params'), params[0]!);
  assert.ok(diff < tol, `parameters differ by ${diff} (only the order of float additions differs)`);
}

/** A tiny dVAE (W = 4, uncompressed) with `dvae` set, opened flat and sharded over two hosts; `rewrites`
 *  trains both 6 steps and returns each step's codeRestarts on every rank. */
async function flatAndSharded(dvae: Record<string, unknown>) {
  const spec = resolveSpec({ preset: 'tiny', powersgd: { enabled: false }, dvae, train: { worldSize: 4 } });
  const checkpoints = (await openStores({ dir: mkdtempSync(join(tmpdir(), 'shard-')) })).checkpoints;
  const open = (hostIds?: string[]) =>
    openRanks({ url: NATS_URL, spec, stage: 'dvae', hostIds, checkpoints, runId: uniqueId('recipe') });
  const flat = await open();
  const sharded = await open(['a', 'b', 'a', 'b']);
  const batchOf = (step: number, rank: number) => patches(spec.dvae.resolution, step, rank);
  const rewrites = async (ranks: typeof flat) =>
    (await trainRanks(ranks, spec, 0, 6, batchOf)).map((s) => s.ranks.map((r) => r.metrics.codeRestarts));
  const close = async () => {
    await closeRanks(flat);
    await closeRanks(sharded);
  };
  return { flat, sharded, rewrites, close };
}

test('sharding: a sharded dVAE restarts the same dead codes as the flat one, and rank 0 gathers its EMA', async (t) => {
  const { flat, sharded, rewrites, close } = await flatAndSharded({
    quantizer: 'vq',
    codeRestartEvery: 2,
    codeRestartUntil: 100,
  });
  try {
    const [rf, rs] = [await rewrites(flat), await rewrites(sharded)];
    t.diagnostic(
      `codes restarted per step (every rank): flat ${JSON.stringify(rf)}, sharded ${JSON.stringify(rs)}`,
    );
    assert.deepEqual(rs, rf, 'the same restarts at the same steps, on every rank');
    assert.ok(
      rf.flat().some((n) => (n ?? 0) > 0),
      'some codes were restarted',
    );

    sameParams(flat, sharded, 1e-5);

    const emas = await Promise.all(sharded.runtimes.map((r) => r.gatherEma(6)));
    assert.deepEqual(
      emas.map((e) => e !== undefined),
      [true, false, false, false],
      'rank 0 alone gets the EMA',
    );
    const emaDiff = maxAbs(flat.trainers[0]!.exportParams('ema'), emas[0]!);
    assert.ok(emaDiff < 1e-5, `EMA differs from the flat trainer's by ${emaDiff}`);
  } finally {
    await close();
  }
});

test('sharding: a sharded dVAE splits the same codes as the flat one, every rank alike', async (t) => {
  const { flat, sharded, rewrites, close } = await flatAndSharded({ codeSplitEvery: 2, codeSplitUntil: 100 });
  try {
    const [sf, ss] = [await rewrites(flat), await rewrites(sharded)];
    t.diagnostic(
      `codes split per step (every rank): flat ${JSON.stringify(sf)}, sharded ${JSON.stringify(ss)}`,
    );
    for (const s of [...sf, ...ss]) assert.equal(new Set(s).size, 1, `every rank splits alike: ${s}`);
    assert.deepEqual(ss, sf, 'the same splits at the same steps');
    assert.ok(
      sf.every((s, step) => (step % 2 === 1 ? s[0]! > 0 : s[0] === 0)),
      'codes split after every second update',
    );
    sameParams(flat, sharded, 1e-4);
  } finally {
    await close();
  }
});
