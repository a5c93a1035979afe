// CUB-200-2011 (kind c) in its own layout with the Reed et al. text_c10 captions beside it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { resolveSpec } from '../config/index.ts';
import { openDataset, SKIP_REASONS } from '../data/index.ts';

test('data: cub layout with text_c10 captions loads both splits and counts bad items', async () => {
  const root = await mkdtemp(join(tmpdir(), 'data-cub-'));
  try {
    const cub = join(root, 'CUB_200_2011');
    const classes = ['001.Black_footed_Albatross', '002.Laysan_Albatross'];
    const lines: string[] = [];
    const split: string[] = [];
    let id = 0;
    for (const cls of classes) {
      await mkdir(join(cub, 'images', cls), { recursive: true });
      await mkdir(join(root, 'cvpr2016_cub', 'text_c10', cls), { recursive: true });
      for (let k = 0; k < 4; k++) {
        id++;
        const name = `${cls.slice(4)}_${String(k).padStart(4, '0')}_${100 + id}`;
        lines.push(`${id} ${cls}/${name}.jpg`);
        split.push(`${id} ${k < 3 ? 1 : 0}`);
        const w = id === 2 ? 90 : 40; // id 2: aspect 90/40 > 2
        await writeFile(
          join(cub, 'images', cls, `${name}.jpg`),
          await sharp(Buffer.alloc(w * 40 * 3, 30 * k), { raw: { width: w, height: 40, channels: 3 } })
            .jpeg()
            .toBuffer(),
        );
        if (id === 3) continue; // no caption file
        const caps = Array.from({ length: 10 }, (_, c) => `this bird ${id} has feature ${c}`);
        await writeFile(join(root, 'cvpr2016_cub', 'text_c10', cls, `${name}.txt`), caps.join('\n') + '\n');
      }
    }
    lines.push(`${++id} ${classes[0]}/missing_file.jpg`); // listed, never written
    split.push(`${id} 1`);
    await writeFile(join(root, 'cvpr2016_cub', 'text_c10', classes[0], 'missing_file.txt'), 'a caption');
    await writeFile(join(cub, 'images.txt'), lines.join('\n') + '\n');
    await writeFile(join(cub, 'train_test_split.txt'), split.join('\n') + '\n');

    const dataset = resolveSpec({ preset: 'tiny', dataset: { kind: 'cub', path: cub } }).dataset;
    const train = await openDataset(dataset);
    const test = await openDataset(dataset, { split: 'heldout' });
    // Train: ids 1,2,3,5,6,7 + 9 (missing file); 2 is too wide, 3 has no captions, 9 has no image.
    assert.equal(train.size, 4);
    assert.deepEqual(train.skipped, {
      [SKIP_REASONS.aspectRatio]: 1,
      [SKIP_REASONS.missingCaptions]: 1,
      [SKIP_REASONS.missingImage]: 1,
    });
    assert.equal(test.size, 2);
    assert.deepEqual(test.skipped, {});
    assert.equal((await train.captions(0)).length, 10);
    assert.equal((await train.captions(0))[3], 'this bird 1 has feature 3');
    const item = await test.get(1, { seed: 0, epoch: 2 });
    assert.deepEqual([item.width, item.height], [40, 40]);
    assert.match(item.caption, /^this bird 8 has feature \d$/);
    // An explicit caption folder, and a helpful error when none is found.
    const explicit = resolveSpec({
      preset: 'tiny',
      dataset: { kind: 'cub', path: cub, captions: '../cvpr2016_cub/text_c10' },
    }).dataset;
    assert.equal((await openDataset(explicit)).size, 4);
    const wrong = resolveSpec({
      preset: 'tiny',
      dataset: { kind: 'cub', path: cub, captions: 'nowhere' },
    }).dataset;
    await assert.rejects(
      openDataset(wrong),
      (e: unknown) => (e as Error).name === 'DatasetFormatError' && /nowhere/.test((e as Error).message),
    );
  } finally {
    await rm(root, { recursive: true, force: true });
  }
});
