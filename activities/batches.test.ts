import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveSpec } from '../config/index.ts';
import { ShapesDataset, trainTokenizer } from '../data/index.ts';
import { mixSeed } from '../random/index.ts';
import { transformerCaption } from './batches.ts';

const spec = resolveSpec({ preset: 'tiny', transformer: { captionDropout: 0.25 } });
if (spec.dataset.kind !== 'shapes') throw new Error('tiny trains on shapes');
const ds = new ShapesDataset(spec.dataset, 'train');
const tokenizer = await trainTokenizer(ds, spec.transformer.vocabSize);
const L = spec.transformer.textLen;

test('batches: caption dropout replaces ≈ captionDropout of the captions by all padding, keyed by position', async () => {
  const caption = (await ds.get(0)).caption;
  let dropped = 0;
  for (let p = 0; p < 2000; p++) {
    const ids = transformerCaption(tokenizer, caption, p, spec);
    assert.equal(ids.length, L);
    const empty = ids.every((x) => x === 0);
    if (empty) dropped++;
    else {
      const plain = tokenizer.encode(caption, L, {
        dropout: spec.transformer.bpeDropout,
        seed: mixSeed(spec.train.seed, 'bpe', p),
      }).ids;
      assert.deepEqual([...ids], [...plain], 'a kept caption is exactly the BPE of before');
    }
    assert.deepEqual([...transformerCaption(tokenizer, caption, p, spec)], [...ids], 'the same draw again');
  }
  assert.ok(Math.abs(dropped / 2000 - 0.25) < 0.03, `dropped ${dropped} of 2000`);
  const none = resolveSpec({ preset: 'tiny' });
  for (let p = 0; p < 200; p++)
    assert.ok(
      transformerCaption(tokenizer, caption, p, none).some((x) => x !== 0),
      'captionDropout 0 never drops',
    );
});
