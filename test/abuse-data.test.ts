// abuse: datasets whose own files try to lead the reader astray: paths out of the root (COCO file_name,
// CUB images.txt, tar member names, symlinks), an image far too large to decode, tar headers whose size is
// negative or not a number. Each is skipped and counted, or an error that names the problem: never a read
// outside the root, a decompression bomb, or an endless loop.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { resolveSpec } from '../config/index.ts';
import { openDataset, SKIP_REASONS } from '../data/index.ts';
import { listTar, tarBytes, TarFormatError } from '../data/tar.ts';

const png = (w: number, h: number) =>
  sharp({ create: { width: w, height: h, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();

const cfg = (kind: string, path: string, extra: Record<string, unknown> = {}) =>
  resolveSpec({ preset: 'tiny', dataset: { kind, path, verify: 'header', ...extra } }).dataset;

async function withDirs(fn: (root: string, outside: string) => Promise<void>): Promise<void> {
  const base = await mkdtemp(join(tmpdir(), 'abuse-data-'));
  const [root, outside] = [join(base, 'root'), join(base, 'outside')];
  await mkdir(root);
  await mkdir(outside);
  await writeFile(join(outside, 'secret.png'), await png(16, 16));
  await writeFile(join(outside, 'secret.txt'), 'a caption that must never be read\n');
  try {
    await fn(root, outside);
  } finally {
    await rm(base, { recursive: true, force: true });
  }
}

test('abuse: COCO file_name and annotations cannot leave the root; a symlink out is rejected, one inside followed', async () => {
  await withDirs(async (root, outside) => {
    await mkdir(join(root, 'imgs'));
    await writeFile(join(root, 'imgs', 'ok.png'), await png(16, 16));
    await symlink(join(outside, 'secret.png'), join(root, 'imgs', 'link-out.png'));
    await symlink(join(root, 'imgs', 'ok.png'), join(root, 'imgs', 'link-in.png'));
    const names = [
      'ok.png',
      '../../outside/secret.png',
      join(outside, 'secret.png'),
      'link-out.png',
      'link-in.png',
    ];
    await writeFile(
      join(root, 'captions.json'),
      JSON.stringify({
        images: names.map((file_name, id) => ({ id, file_name })),
        annotations: names.map((_, id) => ({ image_id: id, caption: `caption ${id}` })),
      }),
    );
    const ds = await openDataset(cfg('coco', root, { annotations: 'captions.json', images: 'imgs' }));
    assert.equal(ds.size, 2, 'ok.png and the symlink that stays inside');
    assert.equal(ds.skipped[SKIP_REASONS.outsideRoot], 3, JSON.stringify(ds.skipped));
    await assert.rejects(
      openDataset(cfg('coco', root, { annotations: '../outside/x.json', images: 'imgs' })),
      /annotations '..\/outside\/x.json' leads outside the dataset root/,
    );
    await assert.rejects(
      openDataset(cfg('coco', root, { annotations: 'captions.json', images: '/etc' })),
      /images '\/etc' leads outside/,
    );
  });
});

test('abuse: CUB images.txt lines that climb out are skipped and counted', async () => {
  await withDirs(async (root) => {
    await mkdir(join(root, 'images', 'c'), { recursive: true });
    await mkdir(join(root, 'text_c10', 'c'), { recursive: true });
    await writeFile(join(root, 'images', 'c', 'bird.png'), await png(16, 16));
    await writeFile(join(root, 'text_c10', 'c', 'bird.txt'), 'a small bird\n');
    await writeFile(join(root, 'images.txt'), '1 c/bird.png\n2 ../../outside/secret.png\n3 /etc/passwd\n');
    const ds = await openDataset(cfg('cub', root));
    assert.equal(ds.size, 1);
    assert.equal(ds.skipped[SKIP_REASONS.outsideRoot], 2, JSON.stringify(ds.skipped));
  });
});

test('abuse: folder symlinks out of the root are rejected and reported, symlinked folders not descended', async () => {
  await withDirs(async (root, outside) => {
    await writeFile(join(root, 'a.png'), await png(16, 16));
    await writeFile(join(root, 'a.txt'), 'a grey square\n');
    await symlink(join(outside, 'secret.png'), join(root, 'b.png'));
    await writeFile(join(root, 'b.txt'), 'the caption of a link out\n');
    await symlink(outside, join(root, 'everything-outside'));
    const ds = await openDataset(cfg('folder', root));
    assert.equal(ds.size, 1);
    assert.equal(ds.skipped[SKIP_REASONS.outsideRoot], 1, JSON.stringify(ds.skipped));
    assert.equal(ds.skipped[SKIP_REASONS.symlinkedDir], 1);
  });
});

test('abuse: an image above the pixel limit is skipped as too-large before it is decoded', async () => {
  await withDirs(async (root) => {
    await writeFile(join(root, 'small.png'), await png(16, 16));
    await writeFile(join(root, 'small.txt'), 'small\n');
    await writeFile(join(root, 'huge.png'), await png(8000, 6000)); // 48 megapixels, a few hundred KB
    await writeFile(join(root, 'huge.txt'), 'huge\n');
    const ds = await openDataset(cfg('folder', root, { verify: 'decode' }));
    assert.equal(ds.size, 1);
    assert.equal(ds.skipped[SKIP_REASONS.tooLarge], 1, JSON.stringify(ds.skipped));
  });
});

/** One ustar header block with `size` written raw into its size field (checksum fixed up). */
function header(name: string, type: string, sizeField: Uint8Array): Uint8Array {
  const h = new Uint8Array(512);
  h.set(new TextEncoder().encode(name));
  h.set(new TextEncoder().encode('0000644\0'), 100);
  h.set(sizeField, 124);
  h[156] = type.charCodeAt(0);
  h.set(new TextEncoder().encode('ustar\x0000'), 257);
  h.fill(0x20, 148, 156);
  const sum = h.reduce((a, b) => a + b, 0);
  h.set(new TextEncoder().encode(sum.toString(8).padStart(6, '0') + '\0 '), 148);
  return h;
}

test('abuse: tar member names that escape are skipped; negative or non-numeric sizes are errors, never a loop', async () => {
  await withDirs(async (root) => {
    const img = await png(16, 16);
    await writeFile(
      join(root, 'shard.tar'),
      tarBytes([
        { name: 'good.png', data: img },
        { name: 'good.txt', data: Buffer.from('good\n') },
        { name: '../evil.png', data: img },
        { name: '../evil.txt', data: Buffer.from('evil\n') },
      ]),
    );
    const ds = await openDataset(cfg('webdataset', root));
    assert.equal(ds.size, 1);
    assert.equal(ds.skipped[SKIP_REASONS.outsideRoot], 2);

    const negative = new Uint8Array(12).fill(0xff); // base-256 -1
    const paxBody = new TextEncoder().encode('14 size=-512\n');
    const cases: [string, Uint8Array][] = [
      ['negative base-256 size', header('x.png', '0', negative)],
      ['non-octal size', header('x.png', '0', new TextEncoder().encode('12abc\0'))],
      [
        'negative pax size',
        new Uint8Array([
          ...header('PaxHeader', 'x', new TextEncoder().encode('00000000015\0')),
          ...paxBody,
          ...new Uint8Array(512 - paxBody.length),
          ...header('x.png', '0', new TextEncoder().encode('00000000000\0')),
          ...new Uint8Array(1024),
        ]),
      ],
    ];
    for (const [what, bytes] of cases) {
      const f = join(root, `${what.replace(/ /g, '-')}.tar`);
      await writeFile(f, new Uint8Array([...bytes, ...new Uint8Array(1024)]));
      await assert.rejects(listTar(f), TarFormatError, what);
    }
  });
});
