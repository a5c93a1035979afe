import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadSpec } from '../config/index.ts';
import { initTfBackend } from './tf-backend.ts';
import {
  initTransformerParams,
  TokenInputError,
  Transformer,
  TransformerParamsError,
  transformerParameterCount,
  transformerParamSpecs,
} from './transformer.ts';

await initTfBackend('cpu');
/** Native TensorFlow, when tfjs-node is installed (optional), is checked against cpu like wasm is. */
const native = await initTfBackend('tensorflow').then(
  () => ['tensorflow'],
  () => [],
);
await initTfBackend('wasm');

const tiny = loadSpec('tiny');
const L = tiny.transformer.textLen; // 12
const N = tiny.dvae.grid ** 2; // 16

/** n captions where caption i has 3 + i real tokens, then padding. */
function captions(n: number): Int32Array {
  return Int32Array.from({ length: n * L }, (_, k) => {
    const i = Math.floor(k / L);
    const p = k % L;
    return p < 3 + i ? 1 + ((7 * k + 3) % (tiny.transformer.vocabSize - 1)) : 0;
  });
}

function images(n: number, salt = 0): Int32Array {
  return Int32Array.from(
    { length: n * N },
    (_, k) => (13 * k + salt + Math.floor(k / N)) % tiny.dvae.codebookSize,
  );
}

test('transformer: paper-12b counts 12.0B ± 0.2B parameters without allocating', () => {
  const paper = loadSpec('paper-12b');
  const before = tf.memory();
  const count = transformerParameterCount(paper.transformer, paper.dvae);
  assert.equal(tf.memory().numTensors, before.numTensors);
  assert.equal(tf.memory().numBytes, before.numBytes);
  assert.ok(Math.abs(count - 12.0e9) <= 0.2e9, `paper-12b has ${count} parameters`);
  // By hand: 64 layers × (12·d² + 13·d) + (16384 + 256 + 256 + 1 + 8192 + 32 + 32)·d + 2·d, d = 3968.
  const d = 3968;
  assert.equal(count, 64 * (12 * d * d + 13 * d) + (16384 + 256 + 256 + 1 + 8192 + 32 + 32) * d + 2 * d);
  // Separate unembedding matrices add (16384 + 8192)·d.
  const untied = transformerParameterCount({ ...paper.transformer, tiedUnembedding: false }, paper.dvae);
  assert.equal(untied - count, (16384 + 8192) * d);
});

test('transformer: the count equals what tiny allocates, and kinds cover every parameter', () => {
  const specs = transformerParamSpecs(tiny.transformer, tiny.dvae);
  const arrays = initTransformerParams(tiny.transformer, tiny.dvae, 0);
  assert.equal(
    arrays.reduce((s, a) => s + a.length, 0),
    transformerParameterCount(tiny.transformer, tiny.dvae),
  );
  const kinds = new Set(specs.map((s) => s.kind));
  assert.deepEqual([...kinds].sort(), ['bias', 'embedding', 'gain', 'matrix']);
  const untied = transformerParamSpecs({ ...tiny.transformer, tiedUnembedding: false }, tiny.dvae);
  assert.deepEqual(
    untied.filter((s) => s.kind === 'unembedding').map((s) => s.name),
    ['text.unembed', 'image.unembed'],
  );
  assert.equal(new Set(specs.map((s) => s.name)).size, specs.length);
  // Same seed, same init; another seed, another init.
  assert.deepEqual(initTransformerParams(tiny.transformer, tiny.dvae, 0)[0], arrays[0]);
  assert.notDeepEqual(initTransformerParams(tiny.transformer, tiny.dvae, 1)[0], arrays[0]);
});

test('transformer: padding positions use their own learned vectors, not token 0 plus position', () => {
  const specs = transformerParamSpecs(tiny.transformer, tiny.dvae);
  const tensors = initTransformerParams(tiny.transformer, tiny.dvae, 0).map((a, i) =>
    tf.tensor(a, specs[i]!.shape),
  );
  const n = 3; // real lengths 3, 4, 5: positions 0..2 never padded, 5..11 always, 3..4 sometimes
  const text = tf.tensor2d(captions(n), [n, L], 'int32');
  const image = tf.tensor2d(images(n), [n, N], 'int32');
  const idx = (name: string) => specs.findIndex((s) => s.name === name);
  const grads = tf.grads((...ps: tf.Tensor[]) => {
    const m = new Transformer(tiny.transformer, tiny.dvae, ps);
    const l = m.losses(text, image);
    m.dispose();
    return l.imageLoss; // image loss only: text.embed gets no unembedding gradient through the text logits
  })(tensors);
  const rowNorms = (g: tf.Tensor) => {
    const a = g.arraySync() as number[][];
    return a.map((r) => Math.hypot(...r));
  };
  const pad = rowNorms(grads[idx('text.pad')]!);
  const pos = rowNorms(grads[idx('text.pos')]!);
  for (let p = 0; p < L; p++) {
    const padded = p >= 3; // some caption is padded at p
    const real = p < 5; // some caption has a real token at p
    assert.equal(pad[p]! > 0, padded, `text.pad row ${p}`);
    assert.equal(pos[p]! > 0, real, `text.pos row ${p}`);
  }
  // Token id 0 never enters as an input (its one-hot rows are masked out).
  const embed0 = rowNorms(grads[idx('text.embed')]!)[0]!;
  assert.equal(embed0, 0);
  tf.dispose([...tensors, ...grads, text, image]);
});

test('transformer: text and image losses are each normalized by their own counts and weighted 1/8, 7/8', () => {
  const m = Transformer.fromArrays(
    tiny.transformer,
    tiny.dvae,
    initTransformerParams(tiny.transformer, tiny.dvae, 2).map((a) => a.map((x) => x * 10)),
  );
  const n = 3;
  const textIds = captions(n);
  const imageIds = images(n);
  const text = tf.tensor2d(textIds, [n, L], 'int32');
  const image = tf.tensor2d(imageIds, [n, N], 'int32');
  const imageIn = image.slice([0, 0], [n, N - 1]);
  const before = tf.memory().numTensors;
  const lg = m.logits(text, imageIn);
  const tl = lg.text.arraySync(); // [n, L-1, V]
  const il = lg.image.arraySync(); // [n, N, K]
  const nll = (row: number[], target: number) => {
    const mx = Math.max(...row);
    return Math.log(row.reduce((s, x) => s + Math.exp(x - mx), 0)) + mx - row[target]!;
  };
  let textSum = 0;
  let imageSum = 0;
  for (let i = 0; i < n; i++) {
    for (let p = 0; p < L - 1; p++) textSum += nll(tl[i]![p]!, textIds[i * L + p + 1]!);
    for (let j = 0; j < N; j++) imageSum += nll(il[i]![j]!, imageIds[i * N + j]!);
  }
  const l = m.losses(text, image);
  const [loss, textLoss, imageLoss] = [l.loss, l.textLoss, l.imageLoss].map((t) => t.dataSync()[0]!);
  assert.ok(
    Math.abs(textLoss! - textSum / (n * (L - 1))) < 1e-4,
    `text ${textLoss} vs ${textSum / (n * (L - 1))}`,
  );
  assert.ok(Math.abs(imageLoss! - imageSum / (n * N)) < 1e-4, `image ${imageLoss} vs ${imageSum / (n * N)}`);
  assert.ok(Math.abs(loss! - (textLoss! / 8 + (7 * imageLoss!) / 8)) < 1e-5);
  assert.ok(
    Math.abs(textLoss! - imageLoss!) > 0.1,
    'the two parts must differ for the weighting to be visible',
  );
  tf.dispose([lg.text, lg.image, l.loss, l.textLoss, l.imageLoss]);
  assert.equal(tf.memory().numTensors, before, 'forward and loss leak no tensors');
  tf.dispose([text, image, imageIn]);
  m.dispose();
});

test(`transformer: every parameter gradient on ${['wasm', ...native].join(' and ')} matches cpu (relative error < 1e-4)`, () => {
  const arrays = initTransformerParams(tiny.transformer, tiny.dvae, 5).map((a) => a.map((x) => x * 5));
  const n = 3;
  const run = (backend: string) => {
    // All backends are initialized above, so the switch is synchronous; the assert checks it.
    void tf.setBackend(backend);
    assert.equal(tf.getBackend(), backend);
    return tf.tidy(() => {
      const vars = arrays.map((a, i) =>
        tf.variable(tf.tensor(a, transformerParamSpecs(tiny.transformer, tiny.dvae)[i]!.shape), true),
      );
      const m = new Transformer(tiny.transformer, tiny.dvae, vars);
      const text = tf.tensor2d(captions(n), [n, L], 'int32');
      const image = tf.tensor2d(images(n, 3), [n, N], 'int32');
      const { grads } = tf.variableGrads(() => m.losses(text, image).loss, vars);
      const out = vars.map((v) => grads[v.name]!.dataSync().slice());
      m.dispose();
      tf.dispose(vars);
      return out;
    });
  };
  const cpu = run('cpu');
  const specs = transformerParamSpecs(tiny.transformer, tiny.dvae);
  for (const backend of ['wasm', ...native]) {
    const other = run(backend);
    specs.forEach((s, i) => {
      let diff = 0;
      let scale = 0;
      for (let j = 0; j < cpu[i]!.length; j++) {
        diff = Math.max(diff, Math.abs(other[i]![j]! - cpu[i]![j]!));
        scale = Math.max(scale, Math.abs(cpu[i]![j]!));
      }
      if (scale === 0) return; // e.g. padding vectors of positions every caption fills
      assert.ok(diff / scale < 1e-4, `${backend}: ${s.name}: relative error ${diff / scale}`);
    });
  }
  void tf.setBackend('wasm');
});

test('transformer: image logits see all text and only earlier image tokens', () => {
  const m = Transformer.fromArrays(
    tiny.transformer,
    tiny.dvae,
    initTransformerParams(tiny.transformer, tiny.dvae, 4).map((a) => a.map((x) => x * 10)),
  );
  const imageLogits = (textIds: Int32Array, imageIds: Int32Array) =>
    tf.tidy(
      () =>
        m
          .logits(
            tf.tensor2d(textIds, [1, L], 'int32'),
            tf.tensor2d(imageIds.subarray(0, N - 1), [1, N - 1], 'int32'),
          )
          .image.arraySync()[0]!,
    );
  const t0 = captions(1);
  const z0 = images(1);
  const base = imageLogits(t0, z0);
  const z1 = z0.slice();
  z1[9] = (z1[9]! + 1) % tiny.dvae.codebookSize; // fed at position L + 10, predicts z_10 onwards
  const changed = imageLogits(t0, z1);
  for (let j = 0; j < N; j++) {
    const same = base[j]!.every((x, k) => x === changed[j]![k]);
    if (j <= 9) assert.ok(same, `image logits ${j} must not see token 9`);
  }
  assert.ok(!changed[10]!.every((x, k) => x === base[10]![k]), 'z_10 must see z_9 (row attention)');
  const t1 = t0.slice();
  t1[L - 1] = 5; // the last text position, padding before
  const withText = imageLogits(t1, z0);
  assert.ok(
    !withText[0]!.every((x, k) => x === base[0]![k]),
    'the first image token sees the last text position',
  );
  m.dispose();
});

test('transformer: attention full lets the last image logits see the first token, where the sparse conv layer does not', () => {
  // One layer is the paper's convolutional one: a 3×3 causal kernel on the 4×4 grid, so z_15's logits
  // (position L + 15) see back to z_9 at most; `full` sees every earlier image token.
  const seesFirstToken = (attention: 'sparse' | 'full') => {
    const cfg = { ...tiny.transformer, layers: 1, attention };
    const m = Transformer.fromArrays(
      cfg,
      tiny.dvae,
      initTransformerParams(cfg, tiny.dvae, 4).map((a) => a.map((x) => x * 2)), // softmax not one-hot
    );
    const last = (imageIds: Int32Array) =>
      tf.tidy(
        () =>
          m
            .logits(
              tf.tensor2d(captions(1), [1, L], 'int32'),
              tf.tensor2d(imageIds.subarray(0, N - 1), [1, N - 1], 'int32'),
            )
            .image.arraySync()[0]![N - 1]!,
      );
    const z0 = images(1);
    const z1 = z0.slice();
    z1[0] = (z1[0]! + 1) % tiny.dvae.codebookSize;
    const [a, b] = [last(z0), last(z1)];
    m.dispose();
    return !a.every((x, k) => x === b[k]);
  };
  assert.equal(seesFirstToken('sparse'), false);
  assert.equal(seesFirstToken('full'), true);
});

test('transformer: bad parameter arrays and token ids are named', () => {
  const arrays = initTransformerParams(tiny.transformer, tiny.dvae, 0);
  assert.throws(
    () => Transformer.fromArrays(tiny.transformer, tiny.dvae, arrays.slice(1)),
    TransformerParamsError,
  );
  const short = arrays.map((a, i) => (i === 3 ? a.subarray(1) : a));
  assert.throws(
    () => Transformer.fromArrays(tiny.transformer, tiny.dvae, short),
    /image\.start has 31 values, expected 32/,
  );
  const m = Transformer.fromArrays(tiny.transformer, tiny.dvae, arrays);
  assert.throws(
    () => m.checkTokens(new Int32Array(L - 1), 1),
    (e) => e instanceof TokenInputError && e.field === 'text',
  );
  assert.throws(() => m.checkTokens(new Int32Array(L).fill(64), 1), /id 64 at 0 is outside \[0, 64\)/);
  assert.throws(() => m.prefill(new Int32Array(L).fill(-3), 1), TokenInputError);
  assert.throws(
    () => m.checkTokens(new Int32Array(L), 1, new Int32Array(N).fill(-1)),
    (e) => e instanceof TokenInputError && e.field === 'image',
  );
  m.dispose();
});
