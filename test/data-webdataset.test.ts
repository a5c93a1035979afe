// WebDataset shards (kind b) written by our tar writer and by GNU tar.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { resolveSpec } from '../config/index.ts';
import {
  openDataset,
  ShapesDataset,
  SKIP_REASONS,
  tarBytes,
  TarFormatError,
  writeShapes,
} from '../data/index.ts';

function cfg(path: string, extra: Record<string, unknown> = {}): Parameters<typeof openDataset>[0] {
  return resolveSpec({ preset: 'tiny', dataset: { kind: 'webdataset', path, ...extra } }).dataset;
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'data-wds-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('data: webdataset shards written by writeShapes read back the same pixels and captions', async () => {
  await withDir(async (dir) => {
    const shards = await writeShapes(dir, 'webdataset', { count: 30, canvas: 16, seed: 11, shardSize: 7 });
    assert.equal(shards.length, 5);
    const ds = await openDataset(cfg(dir));
    const ref = new ShapesDataset({ kind: 'shapes', count: 30, canvas: 16, seed: 11 });
    assert.equal(ds.size, 30);
    assert.deepEqual(ds.skipped, {});
    for (let i = 0; i < 30; i++) {
      assert.deepEqual((await ds.get(i)).rgb, (await ref.get(i)).rgb, `item ${i}`);
      assert.deepEqual(await ds.captions(i), await ref.captions(i));
    }
    // One shard alone is a dataset too.
    assert.equal((await openDataset(cfg(shards[4]))).size, 2);
  });
});

test('data: webdataset counts bad samples, ignores other members, reads GNU tar shards', async () => {
  await withDir(async (dir) => {
    const img = await sharp(Buffer.alloc(24 * 20 * 3, 120), { raw: { width: 24, height: 20, channels: 3 } })
      .jpeg()
      .toBuffer();
    const wide = await sharp(Buffer.alloc(50 * 20 * 3, 10), { raw: { width: 50, height: 20, channels: 3 } })
      .png()
      .toBuffer();
    const t = (s: string): Buffer => Buffer.from(s);
    await writeFile(
      join(dir, 'a.tar'),
      tarBytes([
        { name: 'ok1.jpg', data: img },
        { name: 'ok1.txt', data: t('a grey photo\nanother caption') },
        { name: 'ok1.json', data: t('{"ignored": true}') },
        { name: 'bad.jpg', data: t('not a jpeg') },
        { name: 'bad.txt', data: t('caption') },
        { name: 'nocap.jpg', data: img },
        { name: 'blank.jpg', data: img },
        { name: 'blank.txt', data: t('  \n') },
        { name: 'textonly.txt', data: t('no image here') },
        { name: 'wide.png', data: wide },
        { name: 'wide.txt', data: t('too wide') },
        { name: 'meta.json', data: t('{}') },
        { name: 'dir/ok2.jpeg', data: img },
        { name: 'dir/ok2.txt', data: t('in a folder') },
      ]),
    );
    // A shard made by GNU tar from files on disk.
    const src = join(dir, 'src');
    await mkdir(src);
    await writeFile(join(src, 's1.jpg'), img);
    await writeFile(join(src, 's1.txt'), 'from gnu tar');
    execFileSync('tar', ['-cf', join(dir, 'b.tar'), '-C', src, 's1.jpg', 's1.txt']);
    const ds = await openDataset(cfg(dir));
    assert.equal(ds.size, 3);
    assert.deepEqual(ds.skipped, {
      [SKIP_REASONS.unreadableImage]: 1,
      [SKIP_REASONS.missingCaptions]: 1,
      [SKIP_REASONS.emptyCaption]: 1,
      [SKIP_REASONS.missingImage]: 1,
      [SKIP_REASONS.aspectRatio]: 1,
    });
    assert.deepEqual(await ds.captions(0), ['a grey photo', 'another caption']);
    assert.deepEqual(await ds.captions(1), ['in a folder']);
    assert.deepEqual(await ds.captions(2), ['from gnu tar']);
    const s = await ds.get(2);
    assert.deepEqual([s.width, s.height, s.rgb.length], [24, 20, 24 * 20 * 3]);
    assert.ok(ds.key(2).endsWith('b.tar:s1'));
    // A corrupt shard is a format error of the dataset, not a skipped item.
    const bytes = tarBytes([{ name: 'x.txt', data: t('x') }]);
    bytes[0] ^= 0xff;
    await writeFile(join(dir, 'c.tar'), bytes);
    await assert.rejects(openDataset(cfg(dir)), TarFormatError);
    await assert.rejects(
      openDataset(cfg(join(dir, 'missing'))),
      (e: unknown) => (e as Error).name === 'DatasetNotFoundError',
    );
  });
});
