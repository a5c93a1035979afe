// Folder datasets (kind a) from fixtures written here: real files, real sharp decoding.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { resolveSpec } from '../config/index.ts';
import {
  loadBatch,
  openDataset,
  ShapesDataset,
  SKIP_REASONS,
  writeShapes,
  type Dataset,
} from '../data/index.ts';

/** Deterministic RGB noise. */
function pixels(w: number, h: number, seed: number): Uint8Array {
  return new Uint8Array(w * h * 3).map(
    (_, i) => (Math.imul(i + 1, 2654435761) ^ Math.imul(seed, 40503)) >>> 24,
  );
}

async function png(w: number, h: number, seed: number): Promise<Buffer> {
  return sharp(pixels(w, h, seed), { raw: { width: w, height: h, channels: 3 } })
    .png()
    .toBuffer();
}

function folderCfg(path: string, extra: Record<string, unknown> = {}): Parameters<typeof openDataset>[0] {
  return resolveSpec({ preset: 'tiny', dataset: { kind: 'folder', path, ...extra } }).dataset;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'data-folder-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('data: folder dataset loads image/caption pairs and counts every bad file', async () => {
  await withDir(async (dir) => {
    await mkdir(join(dir, 'sub'));
    const good = [
      ['a', 40, 30],
      ['b', 30, 40],
      ['sub/c', 64, 32], // aspect exactly 2: kept
    ] as const;
    for (const [k, w, h] of good) {
      await writeFile(join(dir, `${k}.png`), await png(w, h, k.length));
      await writeFile(join(dir, `${k}.txt`), `first caption of ${k}\n\n  second   caption of ${k}  \n`);
    }
    // Grey JPEG and an RGBA PNG are kept and come out as 3-channel RGB.
    await writeFile(
      join(dir, 'grey.jpg'),
      await sharp(Buffer.alloc(20 * 20, 90), { raw: { width: 20, height: 20, channels: 1 } })
        .jpeg()
        .toBuffer(),
    );
    await writeFile(join(dir, 'grey.txt'), 'a grey square');
    const rgba = Buffer.alloc(10 * 10 * 4, 0); // fully transparent → white on flatten
    await writeFile(
      join(dir, 'rgba.png'),
      await sharp(rgba, { raw: { width: 10, height: 10, channels: 4 } })
        .png()
        .toBuffer(),
    );
    await writeFile(join(dir, 'rgba.txt'), 'transparent');
    // The bad ones.
    await writeFile(join(dir, 'garbage.jpg'), 'this is not a jpeg');
    await writeFile(join(dir, 'garbage.txt'), 'caption of garbage');
    const full = await png(40, 40, 9);
    await writeFile(join(dir, 'truncated.png'), full.subarray(0, full.length >> 1));
    await writeFile(join(dir, 'truncated.txt'), 'caption of truncated');
    await writeFile(join(dir, 'empty.png'), await png(20, 20, 1));
    await writeFile(join(dir, 'empty.txt'), '\n   \n');
    await writeFile(join(dir, 'nocaption.png'), await png(20, 20, 2));
    await writeFile(join(dir, 'orphan.txt'), 'caption without image');
    await writeFile(join(dir, 'wide.png'), await png(61, 30, 3)); // 2.03 : 1
    await writeFile(join(dir, 'wide.txt'), 'too wide');
    await writeFile(join(dir, 'notes.md'), 'ignored: not an image or caption');

    const ds = await openDataset(folderCfg(dir));
    assert.equal(ds.size, 5);
    assert.deepEqual(ds.skipped, {
      [SKIP_REASONS.unreadableImage]: 2,
      [SKIP_REASONS.emptyCaption]: 1,
      [SKIP_REASONS.missingCaptions]: 1,
      [SKIP_REASONS.missingImage]: 1,
      [SKIP_REASONS.aspectRatio]: 1,
    });
    // Sorted by relative path: a, b, grey, rgba, sub/c.
    assert.deepEqual(
      [0, 1, 2, 3, 4].map((i) => ds.key(i).slice(dir.length + 1)),
      ['a.png', 'b.png', 'grey.jpg', 'rgba.png', 'sub/c.png'],
    );
    const a = await ds.get(0);
    assert.deepEqual([a.width, a.height], [40, 30]);
    assert.deepEqual(a.rgb, pixels(40, 30, 1));
    assert.deepEqual(await ds.captions(0), ['first caption of a', 'second caption of a']);
    assert.ok((await ds.captions(0)).includes(a.caption));
    const grey = await ds.get(2);
    assert.equal(grey.rgb.length, 20 * 20 * 3);
    assert.ok(Math.abs(grey.rgb[0] - 90) <= 2 && grey.rgb[0] === grey.rgb[1]);
    assert.deepEqual((await ds.get(3)).rgb, new Uint8Array(300).fill(255));
    // Captions are drawn per (seed, epoch): both lines of item 0 occur over epochs, and a draw repeats.
    const drawn = new Set<string>();
    for (let epoch = 0; epoch < 20; epoch++) drawn.add((await ds.get(0, { seed: 1, epoch })).caption);
    assert.equal(drawn.size, 2);
    assert.equal(
      (await ds.get(0, { seed: 1, epoch: 5 })).caption,
      (await ds.get(0, { seed: 1, epoch: 5 })).caption,
    );
    // `limit` keeps the first valid items.
    const limited = await openDataset(folderCfg(dir, { limit: 2 }));
    assert.equal(limited.size, 2);
    assert.equal(limited.key(1), ds.key(1));
  });
});

test('data: a folder written by writeShapes reads back the same pixels and captions', async () => {
  await withDir(async (dir) => {
    await writeShapes(dir, 'folder', { count: 12, canvas: 16, seed: 7 });
    const ds = await openDataset(folderCfg(dir));
    const ref = new ShapesDataset({ kind: 'shapes', count: 12, canvas: 16, seed: 7 });
    assert.equal(ds.size, 12);
    assert.deepEqual(ds.skipped, {});
    for (let i = 0; i < 12; i++) {
      assert.deepEqual((await ds.get(i)).rgb, (await ref.get(i)).rgb);
      assert.deepEqual(await ds.captions(i), await ref.captions(i));
    }
  });
});

test('data: heldoutFraction splits a folder by key, disjoint and complete', async () => {
  await withDir(async (dir) => {
    await writeShapes(dir, 'folder', { count: 40, canvas: 16, seed: 1 });
    const all = await openDataset(folderCfg(dir));
    const train = await openDataset(folderCfg(dir, { heldoutFraction: 0.3 }), { split: 'train' });
    const held = await openDataset(folderCfg(dir, { heldoutFraction: 0.3 }), { split: 'heldout' });
    const keys = (d: Dataset): string[] => Array.from({ length: d.size }, (_, i) => d.key(i));
    assert.ok(held.size > 3 && held.size < 25, `heldout ${held.size}`);
    assert.equal(train.size + held.size, all.size);
    assert.deepEqual([...keys(train), ...keys(held)].sort(), keys(all).sort());
  });
});

test("data: with verify 'header' a file truncated after its header is kept, and loadBatch substitutes it deterministically", async () => {
  await withDir(async (dir) => {
    await writeShapes(dir, 'folder', { count: 6, canvas: 16, seed: 2 });
    const full = await png(16, 16, 5);
    await writeFile(join(dir, '000003.png'), full.subarray(0, full.length - 40));
    const strict = await openDataset(folderCfg(dir));
    assert.equal(strict.size, 5);
    assert.deepEqual(strict.skipped, { [SKIP_REASONS.unreadableImage]: 1 });
    const lax = await openDataset(folderCfg(dir, { verify: 'header' }));
    assert.equal(lax.size, 6);
    await assert.rejects(lax.get(3), (e: unknown) => (e as Error).name === 'ImageDecodeError');
    const opts = {
      seed: 0,
      step: 0,
      rank: 0,
      worldSize: 1,
      globalBatch: 6,
      resolution: 16,
      pipeline: 'transformer' as const,
    };
    const b = await loadBatch(lax, opts);
    assert.equal(b.substituted, 1);
    assert.ok(!b.indices.includes(3));
    assert.deepEqual(await loadBatch(lax, opts), b);
    // Each rank substitutes the same way, so W = 2 still concatenates to W = 1.
    const r0 = await loadBatch(lax, { ...opts, worldSize: 2 });
    const r1 = await loadBatch(lax, { ...opts, worldSize: 2, rank: 1 });
    assert.deepEqual([...r0.indices, ...r1.indices], b.indices);
  });
});
