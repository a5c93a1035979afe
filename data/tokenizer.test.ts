import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Tokenizer as HfTokenizer } from 'tokenizers';
import { ShapesDataset } from './shapes-dataset.ts';
import { ALL_COMPOSITIONS, shapeCaptions } from './shapes.ts';
import {
  PAD_ID,
  Tokenizer,
  TokenizerFormatError,
  TokenizerOptionsError,
  TokenizerTrainingError,
  trainTokenizer,
  UNK_ID,
  normalizeCaption,
} from './tokenizer.ts';

/** Varied captions: punctuation, digits, apostrophes, accents, emoji, repeated spaces, capitals. */
function corpus(): string[] {
  const subjects = [
    'A small bird',
    'The BIRD',
    'this yellow warbler',
    "a robin's nest",
    'Two café tables',
    'an 18-wheeler truck',
  ];
  const verbs = ['has', 'shows', 'is perched on', "isn't near", 'flies over'];
  const objects = [
    'a branch.',
    'white wings, black tail!',
    'the 3 red apples',
    'naïve art 🎨',
    'grey   feathers; long beak?',
  ];
  const out: string[] = [];
  for (const s of subjects) for (const v of verbs) for (const o of objects) out.push(`${s} ${v} ${o}`);
  return [...out, ...ALL_COMPOSITIONS.slice(0, 60).flatMap(shapeCaptions)];
}

const probes = [
  'a small red circle at the top left',
  'The bird has WHITE wings, black tail!',
  "it's a robin's nest — isn't it?",
  'Zebra quokka 42 ÜBER façade 日本 🎉',
  '   spaces   everywhere   ',
];

test('tokenizer: training is deterministic, ids stay below vocabSize, 0 is never produced', async () => {
  const caps = corpus();
  const a = await Tokenizer.train(caps, { vocabSize: 200 });
  const b = await Tokenizer.train(caps, { vocabSize: 200 });
  assert.deepEqual(a.toJSON(), b.toJSON());
  assert.ok(a.size <= 200 && a.size > 150, `size ${a.size}`);
  for (const c of [...caps, ...probes]) {
    const { ids, length } = a.encode(c, 64);
    for (let i = 0; i < length; i++)
      assert.ok(ids[i] > PAD_ID && ids[i] < 200, `id ${ids[i]} of ${JSON.stringify(c)}`);
  }
  // A larger vocabulary continues the same merges (greedy BPE: the smaller run is a prefix).
  const big = await Tokenizer.train(caps, { vocabSize: 300 });
  const small = a.toJSON().merges;
  assert.deepEqual(big.toJSON().merges.slice(0, small.length), small);
});

test('tokenizer: without dropout our encoder gives the tokenizers library ids on the same merges', async () => {
  const caps = corpus();
  for (const vocabSize of [64, 1024]) {
    const ours = await Tokenizer.train(caps, { vocabSize });
    const hf = HfTokenizer.fromString(JSON.stringify(ours.toHuggingFaceJSON()));
    for (const c of [...caps, ...probes]) {
      const want = (await hf.encode(c)).getIds();
      assert.deepEqual(ours.tokenize(c), want, `vocab ${vocabSize}: ${JSON.stringify(c)}`);
    }
  }
});

test('tokenizer: BPE dropout changes segmentation only when asked, the same way for the same seed', async () => {
  const tok = await Tokenizer.train(corpus(), { vocabSize: 256 });
  let changed = 0;
  for (const [i, c] of corpus().entries()) {
    const plain = tok.encode(c, 64);
    assert.deepEqual(tok.encode(c, 64), plain, 'no dropout: always the same');
    assert.deepEqual(tok.encode(c, 64, { dropout: 0 }), plain);
    const d1 = tok.encode(c, 64, { dropout: 0.1, seed: i });
    assert.deepEqual(tok.encode(c, 64, { dropout: 0.1, seed: i }), d1, 'same seed ⇒ same segmentation');
    assert.equal(tok.decode(d1.ids), tok.decode(plain.ids), 'dropout changes tokens, never text');
    assert.ok(d1.fullLength >= plain.fullLength, 'dropout only splits');
    if (d1.fullLength !== plain.fullLength) changed++;
  }
  assert.ok(changed > 20, `dropout 0.1 changed ${changed} captions`);
  const c = 'there is a large yellow triangle at the bottom left';
  const seeds = new Set(
    Array.from({ length: 20 }, (_, s) =>
      Array.from(tok.encode(c, 64, { dropout: 0.3, seed: s }).ids).join(','),
    ),
  );
  assert.ok(seeds.size > 5, 'different seeds give different segmentations');
  assert.throws(
    () => tok.encode(c, 64, { dropout: 0.1 }),
    (e: unknown) => e instanceof TokenizerOptionsError && e.option === 'seed',
  );
  assert.throws(
    () => tok.encode(c, 64, { dropout: 1 }),
    (e: unknown) => e instanceof TokenizerOptionsError && e.option === 'dropout',
  );
});

test('tokenizer: overlong captions are truncated and reported, short ones 0-padded', async () => {
  const tok = await Tokenizer.train(corpus(), { vocabSize: 128 });
  const long = 'a small bird shows white wings, black tail! and the 3 red apples flies over a branch.';
  const full = tok.tokenize(long);
  const e = tok.encode(long, 8);
  assert.equal(e.truncated, true);
  assert.equal(e.length, 8);
  assert.equal(e.fullLength, full.length);
  assert.deepEqual(Array.from(e.ids), full.slice(0, 8));
  const s = tok.encode('a bird', 16);
  assert.equal(s.truncated, false);
  assert.equal(s.fullLength, s.length);
  assert.deepEqual(Array.from(s.ids.subarray(s.length)), new Array(16 - s.length).fill(PAD_ID));
  assert.equal(tok.decode(s.ids), 'a bird');
  assert.equal(tok.encode('', 4).length, 0);
  assert.throws(
    () => tok.encode('x', 0),
    (e: unknown) => e instanceof TokenizerOptionsError && e.option === 'textLen',
  );
});

test('tokenizer: toJSON → fromJSON restores identical encodings; bad JSON is named', async () => {
  const tok = await Tokenizer.train(corpus(), { vocabSize: 300 });
  const copy = Tokenizer.fromJSON(JSON.parse(JSON.stringify(tok.toJSON())));
  const fromText = Tokenizer.fromJSON(JSON.stringify(tok));
  for (const [i, c] of [...corpus(), ...probes].entries()) {
    assert.deepEqual(
      copy.encode(c, 32, { dropout: 0.1, seed: i }),
      tok.encode(c, 32, { dropout: 0.1, seed: i }),
    );
    assert.deepEqual(fromText.encode(c, 32), tok.encode(c, 32));
  }
  assert.equal(copy.vocabSize, 300);
  const j = tok.toJSON();
  assert.throws(() => Tokenizer.fromJSON('{nope'), TokenizerFormatError);
  assert.throws(
    () => Tokenizer.fromJSON({ ...j, format: 'other' }),
    (e: unknown) => e instanceof TokenizerFormatError && /format/.test(e.message),
  );
  assert.throws(
    () => Tokenizer.fromJSON({ ...j, vocabSize: 10 }),
    (e: unknown) => e instanceof TokenizerFormatError && /exceed/.test(e.message),
  );
  assert.throws(
    () => Tokenizer.fromJSON({ ...j, merges: [['zz', 'qq']] }),
    (e: unknown) => e instanceof TokenizerFormatError && /merge 0/.test(e.message),
  );
  assert.throws(
    () => Tokenizer.fromJSON({ ...j, vocab: j.vocab.slice(1) }),
    (e: unknown) => e instanceof TokenizerFormatError && /<pad>/.test(e.message),
  );
});

test('tokenizer: captions are lowercased; unseen bytes are <unk> in a small vocabulary, never with all 256 bytes', async () => {
  const small = await Tokenizer.train(['a red circle', 'a blue square'], { vocabSize: 40 });
  assert.deepEqual(small.tokenize('A RED Circle'), small.tokenize('a red circle'));
  assert.equal(normalizeCaption('  A\tRED\n circle '), 'a red circle');
  const e = small.encode('a red zebra', 16);
  assert.ok(e.unknown > 0 && Array.from(e.ids).includes(UNK_ID));
  const full = await Tokenizer.train(corpus(), { vocabSize: 1024 });
  for (const p of probes) assert.equal(full.encode(p, 64).unknown, 0, p);
  assert.equal(full.decode(full.encode('Zebra quokka ÜBER 🎉', 64).ids), 'zebra quokka über 🎉');
  await assert.rejects(Tokenizer.train(['', '   '], { vocabSize: 64 }), TokenizerTrainingError);
  await assert.rejects(
    Tokenizer.train(corpus(), { vocabSize: 20 }),
    (e: unknown) => e instanceof TokenizerTrainingError && /cannot hold/.test(e.message),
  );
  await assert.rejects(Tokenizer.train(corpus(), { vocabSize: 2 }), TokenizerOptionsError);
});

test('tokenizer: trains on a dataset (tiny preset shapes, vocab 64) and fits shapes captions in 16 tokens at vocab 128', async () => {
  const tiny = await trainTokenizer(
    new ShapesDataset({ kind: 'shapes', count: 256, canvas: 16, seed: 1234 }),
    64,
  );
  assert.ok(tiny.size <= 64);
  const shapes = await trainTokenizer(
    new ShapesDataset({ kind: 'shapes', count: 4096, canvas: 32, seed: 1234 }),
    128,
  );
  // Held-out compositions use only training words, so they tokenize without <unk> and within textLen 16.
  for (const c of ALL_COMPOSITIONS.flatMap(shapeCaptions)) {
    const e = shapes.encode(c, 16);
    assert.equal(e.truncated, false, c);
    assert.equal(e.unknown, 0);
  }
});
