import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadSpec } from '../config/index.ts';
import { HELD_OUT_COMPOSITIONS, renderShape, TRAIN_COMPOSITIONS, Tokenizer } from '../data/index.ts';
import { initTfBackend, initTransformerParams, Transformer } from '../model/index.ts';
import { sampleAccuracy } from './sample-accuracy.ts';
import { pickCompositions } from './shapes-eval.ts';

test('sample accuracy: every sample the analyzer reads wrong is listed with what was asked and drawn', async () => {
  await initTfBackend('wasm');
  const spec = loadSpec('tiny');
  const model = Transformer.fromArrays(
    spec.transformer,
    spec.dvae,
    initTransformerParams(spec.transformer, spec.dvae, 3),
  );
  const tokenizer = await Tokenizer.train(['a large red circle at the center', 'a small blue square'], {
    vocabSize: spec.transformer.vocabSize,
  });
  const n = 6;
  const R = 32;
  const seen = pickCompositions(TRAIN_COMPOSITIONS, n, 0, 'seen');
  const held = pickCompositions(HELD_OUT_COMPOSITIONS, n, 0, 'heldout');
  // The "decoder" ignores the tokens and draws what was asked, except: seen row 1 in another colour, seen row
  // 4 as a blank canvas, held-out row 2 at another size.
  const wrongColour = { ...seen[1]!, color: seen[1]!.color === 'red' ? 'blue' : 'red' } as const;
  const otherSize = { ...held[2]!, size: held[2]!.size === 'small' ? 'large' : 'small' } as const;
  const drawn = [...seen, ...held].map((c, r) =>
    r === 1 ? wrongColour : r === n + 2 ? otherSize : r === 4 ? null : c,
  );
  try {
    const acc = sampleAccuracy({
      model,
      tokenizer,
      canvas: R,
      n,
      decode: (tokens) => {
        assert.equal(tokens.length, 2 * n * model.dims.imageLen);
        const out = new Uint8Array(2 * n * R * R * 3).fill(255);
        drawn.forEach((c, r) => c && out.set(renderShape(c, R), r * R * R * 3));
        return out;
      },
    });
    assert.equal(acc.seen.all, 4 / 6);
    assert.equal(acc.heldOut.all, 5 / 6);
    assert.deepEqual(acc.misses.seen, [
      { asked: seen[1], drawn: wrongColour },
      { asked: seen[4], drawn: null },
    ]);
    assert.deepEqual(acc.misses.heldOut, [{ asked: held[2], drawn: otherSize }]);
  } finally {
    model.dispose();
  }
});
