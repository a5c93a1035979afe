// MS-COCO captions (kind d): the annotations JSON and image folders of the 2017 release.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { resolveSpec } from '../config/index.ts';
import { openDataset, SKIP_REASONS } from '../data/index.ts';

async function jpeg(w: number, h: number, v: number): Promise<Buffer> {
  return sharp(Buffer.alloc(w * h * 3, v), { raw: { width: w, height: h, channels: 3 } })
    .jpeg()
    .toBuffer();
}

test('data: coco captions json loads train and val2017, counting bad entries', async () => {
  const root = await mkdtemp(join(tmpdir(), 'data-coco-'));
  try {
    await mkdir(join(root, 'annotations'));
    for (const split of ['train2017', 'val2017']) await mkdir(join(root, split));
    const images = [
      { id: 1, file_name: '000000000001.jpg', width: 40, height: 30 },
      { id: 2, file_name: '000000000002.jpg', width: 40, height: 30 }, // no captions
      { id: 3, file_name: '000000000003.jpg', width: 100, height: 30 }, // aspect from the JSON
      { id: 4, file_name: '000000000004.jpg', width: 40, height: 30 }, // file missing
      { id: 5, file_name: '000000000005.jpg', width: 30, height: 40 },
    ];
    for (const im of images)
      if (im.id !== 4)
        await writeFile(join(root, 'train2017', im.file_name), await jpeg(im.width, im.height, im.id * 20));
    const annotations = [
      { id: 10, image_id: 1, caption: 'A man riding a  horse.' },
      { id: 11, image_id: 1, caption: 'Someone on a horse' },
      { id: 12, image_id: 3, caption: 'wide' },
      { id: 13, image_id: 4, caption: 'missing' },
      { id: 14, image_id: 5, caption: 'a tall photo' },
      { id: 15, image_id: 2, caption: '   ' },
    ];
    await writeFile(
      join(root, 'annotations', 'captions_train2017.json'),
      JSON.stringify({ info: {}, images, annotations }),
    );
    await writeFile(join(root, 'val2017', '000000000009.jpg'), await jpeg(32, 32, 50));
    await writeFile(
      join(root, 'annotations', 'captions_val2017.json'),
      JSON.stringify({
        images: [{ id: 9, file_name: '000000000009.jpg', width: 32, height: 32 }],
        annotations: [{ id: 1, image_id: 9, caption: 'val caption' }],
      }),
    );

    const dataset = resolveSpec({ preset: 'tiny', dataset: { kind: 'coco', path: root } }).dataset;
    const train = await openDataset(dataset);
    assert.equal(train.size, 2);
    assert.deepEqual(train.skipped, {
      [SKIP_REASONS.emptyCaption]: 1,
      [SKIP_REASONS.aspectRatio]: 1,
      [SKIP_REASONS.missingImage]: 1,
    });
    assert.deepEqual(await train.captions(0), ['A man riding a horse.', 'Someone on a horse']);
    const tall = await train.get(1);
    assert.deepEqual([tall.width, tall.height, tall.caption], [30, 40, 'a tall photo']);
    const val = await openDataset(dataset, { split: 'heldout' });
    assert.equal(val.size, 1);
    assert.equal((await val.get(0)).caption, 'val caption');
    // An explicit annotations file infers its image folder from the name.
    const explicit = resolveSpec({
      preset: 'tiny',
      dataset: { kind: 'coco', path: root, annotations: 'annotations/captions_val2017.json' },
    }).dataset;
    assert.equal((await openDataset(explicit)).size, 1);
    // A malformed file is a format error naming the file.
    await writeFile(join(root, 'annotations', 'bad.json'), JSON.stringify({ images: 'nope' }));
    const bad = resolveSpec({
      preset: 'tiny',
      dataset: { kind: 'coco', path: root, annotations: 'annotations/bad.json' },
    }).dataset;
    await assert.rejects(
      openDataset(bad),
      (e: unknown) => (e as Error).name === 'DatasetFormatError' && /bad\.json/.test((e as Error).message),
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
