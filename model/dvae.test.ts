import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { DvaeConfig, loadSpec } from '../config/index.ts';
import { initTfBackend } from './tf-backend.ts';
import {
  encoderFeatures,
  Dvae,
  DvaeConfigError,
  DvaeInputError,
  dvaeLayout,
  dvaeParamSpecs,
  dvaeParameterCount,
  initDvaeParams,
} from './dvae.ts';
import { gumbelNoise } from './gumbel.ts';
import { logitLaplaceNll, mapPixels } from './logit-laplace.ts';

await initTfBackend('cpu');
/** Native TensorFlow, when tfjs-node is installed (optional), is checked against cpu like wasm is. */
const native = await initTfBackend('tensorflow').then(
  () => ['tensorflow'],
  () => [],
);
await initTfBackend('wasm');

const tiny = loadSpec('tiny').dvae;
/** Exercises width-changing blocks, several blocks per group and the identity path. */
const deeper: DvaeConfig = DvaeConfig.parse({
  resolution: 16,
  grid: 4,
  codebookSize: 16,
  hidden: 8,
  groups: 3,
  blocksPerGroup: 2,
  steps: 1,
});

/** −log f(x | μ, b) per pixel-channel of the decoder fed codes z, for images x already mapped by φ. */
function pixelNll(m: Dvae, x: tf.Tensor4D, z: tf.Tensor4D): tf.Tensor {
  const stats = m.decoderStats(z);
  const [n, r] = x.shape;
  return logitLaplaceNll(x, stats.slice([0, 0, 0, 0], [n, r, r, 3]), stats.slice([0, 0, 0, 3], [n, r, r, 3]));
}

/** Filled squares and discs on white, deterministic. */
function images(n: number, res: number): Uint8Array {
  const out = new Uint8Array(n * res * res * 3).fill(255);
  for (let i = 0; i < n; i++) {
    const c = [(i * 80) % 256, (i * 150 + 40) % 256, (i * 30 + 200) % 256];
    const cx = 3 + ((i * 5) % (res - 6));
    const cy = 3 + ((i * 3) % (res - 6));
    const r = 2 + (i % 3);
    for (let y = 0; y < res; y++) {
      for (let x = 0; x < res; x++) {
        const inside =
          i % 2 === 0
            ? Math.abs(x - cx) <= r && Math.abs(y - cy) <= r
            : (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
        if (inside) out.set(c, ((i * res + y) * res + x) * 3);
      }
    }
  }
  return out;
}

test('dvae: parameter count is analytic and equals an independent closed form for the paper', () => {
  for (const cfg of [tiny, deeper, loadSpec('shapes').dvae]) {
    const m = new Dvae(cfg);
    assert.equal(
      m.variables.reduce((s, v) => s + v.size, 0),
      dvaeParameterCount(cfg),
    );
    m.dispose();
  }
  // Paper dVAE (n_hid 256, 4 groups × 2 blocks, K 8192), counted block by block from docs/model.md.
  const conv = (k: number, i: number, o: number) => k * k * i * o + o;
  const encBlock = (i: number, o: number) =>
    (i !== o ? conv(1, i, o) : 0) + conv(3, i, o / 4) + 2 * conv(3, o / 4, o / 4) + conv(1, o / 4, o);
  const decBlock = (i: number, o: number) =>
    (i !== o ? conv(1, i, o) : 0) + conv(1, i, o / 4) + 2 * conv(3, o / 4, o / 4) + conv(3, o / 4, o);
  const h = 256;
  const encoder =
    conv(7, 3, h) +
    encBlock(h, h) +
    encBlock(h, h) +
    encBlock(h, 2 * h) +
    encBlock(2 * h, 2 * h) +
    encBlock(2 * h, 4 * h) +
    encBlock(4 * h, 4 * h) +
    encBlock(4 * h, 8 * h) +
    encBlock(8 * h, 8 * h) +
    conv(1, 8 * h, 8192);
  const decoder =
    conv(1, 8192, 128) +
    decBlock(128, 8 * h) +
    decBlock(8 * h, 8 * h) +
    decBlock(8 * h, 4 * h) +
    decBlock(4 * h, 4 * h) +
    decBlock(4 * h, 2 * h) +
    decBlock(2 * h, 2 * h) +
    decBlock(2 * h, h) +
    decBlock(h, h) +
    conv(1, h, 6);
  assert.equal(dvaeParameterCount(loadSpec('paper-12b').dvae), encoder + decoder);
  assert.equal(encoder + decoder, 97_616_006);
});

test('dvae: layout follows the paper (widths, resampling, gain 1/n_layers², parameter kinds)', () => {
  const l = dvaeLayout(loadSpec('paper-12b').dvae);
  assert.equal(l.nLayers, 8);
  assert.equal(l.postGain, 1 / 64);
  assert.deepEqual(
    l.encoder.groups.map((g) => g.blocks[0]!.nOut),
    [256, 512, 1024, 2048],
  );
  assert.deepEqual(
    l.encoder.groups.map((g) => g.resample),
    [true, true, true, false],
  );
  assert.deepEqual(
    l.decoder.groups.map((g) => g.blocks[0]!.nOut),
    [2048, 1024, 512, 256],
  );
  assert.equal(l.decoder.input.nOut, 128);
  assert.deepEqual(
    l.encoder.groups[0]!.blocks[0]!.convs.map((c) => c.k),
    [3, 3, 3, 1],
  );
  assert.deepEqual(
    l.decoder.groups[0]!.blocks[0]!.convs.map((c) => c.k),
    [1, 3, 3, 3],
  );
  const kinds = new Map(dvaeParamSpecs(tiny).map((s) => [s.name, s.kind]));
  assert.equal(kinds.get('encoder.output.w'), 'unembedding');
  assert.equal(kinds.get('decoder.input.w'), 'embedding');
  assert.equal(kinds.get('encoder.input.w'), 'matrix');
  assert.equal(kinds.get('encoder.input.b'), 'bias');
});

test('dvae: encode gives argmax tokens, decode gives images, shapes as the contract says', () => {
  const m = new Dvae(deeper, { seed: 3, chunk: 2 });
  const n = 5;
  const x = images(n, 16);
  const tokens = m.encode(x);
  assert.ok(tokens instanceof Int32Array);
  assert.equal(tokens.length, n * 16);
  assert.ok(tokens.every((t) => t >= 0 && t < 16));
  assert.deepEqual(m.encode(x), tokens, 'no noise: encoding is deterministic');
  const expected = tf.tidy(() =>
    m
      .encoderLogits(mapPixels(tf.tensor4d(x, [n, 16, 16, 3], 'int32').toFloat(), 0.1) as tf.Tensor4D)
      .argMax(-1)
      .dataSync(),
  );
  assert.deepEqual([...tokens], [...expected]);
  const out = m.decode(tokens);
  assert.ok(out instanceof Uint8Array);
  assert.equal(out.length, n * 16 * 16 * 3);
  // decode's row lookup equals the decoder run on one-hot codes.
  const viaOneHot = tf.tidy(() => {
    const stats = m.decoderStats(
      tf.oneHot(tf.tensor1d(tokens, 'int32'), 16).toFloat().reshape([n, 4, 4, 16]) as tf.Tensor4D,
    );
    const mu = stats.slice([0, 0, 0, 0], [n, 16, 16, 3]);
    return mu.sigmoid().sub(0.1).div(0.8).clipByValue(0, 1).mul(255).round().dataSync();
  });
  let maxDiff = 0;
  for (let i = 0; i < out.length; i++) maxDiff = Math.max(maxDiff, Math.abs(out[i]! - viaOneHot[i]!));
  assert.ok(maxDiff <= 1, `decode differs from the one-hot decoder by ${maxDiff} levels`);
  m.dispose();
});

test('dvae: reconstructRelaxed decodes the Gumbel-softmax sample of the encoder logits at τ, noise from the seed', () => {
  const m = new Dvae(deeper, { seed: 3, chunk: 2 });
  const n = 3;
  const x = images(n, 16);
  const tau = 0.5;
  const got = m.reconstructRelaxed(x, tau, 11);
  assert.equal(got.length, n * 16 * 16 * 3);
  assert.deepEqual(m.reconstructRelaxed(x, tau, 11), got, 'one seed, one sample');
  assert.notDeepEqual(m.reconstructRelaxed(x, tau, 12), got, 'another seed, another sample');
  const byHand = tf.tidy(() => {
    const logits = m.encoderLogits(
      mapPixels(tf.tensor4d(x, [n, 16, 16, 3], 'int32').toFloat(), 0.1) as tf.Tensor4D,
    );
    // chunk 2: the noise of images 0–1 and of image 2 come from streams that start at their first index.
    const noise = tf.concat([gumbelNoise(11, 0, 0, [2, 4, 4, 16]), gumbelNoise(11, 0, 2, [1, 4, 4, 16])]);
    const z = tf.softmax(logits.add(noise).div(tau)) as tf.Tensor4D;
    const mu = m.decoderStats(z).slice([0, 0, 0, 0], [n, 16, 16, 3]);
    return mu.sigmoid().sub(0.1).div(0.8).clipByValue(0, 1).mul(255).round().dataSync();
  });
  let maxDiff = 0;
  for (let i = 0; i < got.length; i++) maxDiff = Math.max(maxDiff, Math.abs(got[i]! - byHand[i]!));
  assert.ok(maxDiff <= 1, `differs from the decoder fed the relaxed sample by ${maxDiff} levels`);
  m.dispose();
  const vq = new Dvae({ ...deeper, quantizer: 'vq' }, { seed: 3 });
  assert.throws(() => vq.reconstructRelaxed(x, tau, 11), /vq has no relaxed sample/);
  vq.dispose();
});

test('dvae: centerInput feeds the encoder 2φ(x)−1 instead of φ(x), nothing else changes', () => {
  const plain = new Dvae(tiny, { seed: 8 });
  const centred = Dvae.fromParams({ ...tiny, centerInput: true }, plain.params());
  const x = images(2, 16);
  const [a, b] = tf.tidy(() => {
    const phi = mapPixels(tf.tensor4d(x, [2, 16, 16, 3], 'int32').toFloat(), 0.1) as tf.Tensor4D;
    return [
      centred.encoderLogits(phi).dataSync(),
      plain.encoderLogits(phi.mul(2).sub(1) as tf.Tensor4D).dataSync(),
    ];
  });
  assert.deepEqual([...a!], [...b!]);
  const tokens = plain.encode(x);
  assert.deepEqual(centred.decode(tokens), plain.decode(tokens), 'the decoder is untouched');
  plain.dispose();
  centred.dispose();
});

test('dvae: upsample "shuffle" starts as nearest-neighbour upsampling and has a conv per decoder resample', () => {
  const shuffled = { ...tiny, upsample: 'shuffle' as const };
  const specs = dvaeParamSpecs(shuffled);
  const ups = specs.filter((s) => s.name.endsWith('.upsample.w'));
  assert.deepEqual(
    ups.map((s) => s.shape),
    dvaeLayout(tiny)
      .decoder.groups.filter((g) => g.resample)
      .map((g) => [1, 1, g.blocks.at(-1)!.nOut, 4 * g.blocks.at(-1)!.nOut]),
  );
  const plain = new Dvae(tiny, { seed: 3 });
  const fresh = initDvaeParams(shuffled, 3);
  const byName = new Map(dvaeParamSpecs(tiny).map((s, i) => [s.name, plain.params()[i]!]));
  const m = Dvae.fromParams(
    shuffled,
    specs.map((s, i) => byName.get(s.name) ?? fresh[i]!),
  );
  const tokens = Int32Array.from({ length: 32 }, (_, i) => (i * 7) % 32);
  assert.deepEqual(m.decode(tokens), plain.decode(tokens));
  assert.equal(
    dvaeParameterCount(shuffled),
    dvaeParameterCount(tiny) + ups.reduce((a, s) => a + s.shape[2]! * s.shape[3]! + s.shape[3]!, 0),
  );
  plain.dispose();
  m.dispose();
});

test('dvae: downsample "conv" / upsample "transpose" resample with 4×4 stride-2 convs; fullResolutionBlocks false drops the full-resolution blocks', () => {
  const l = dvaeLayout(strided);
  assert.deepEqual(
    l.encoder.groups.map((g) => g.blocks.length),
    [0, 2, 2],
  );
  assert.deepEqual(
    l.decoder.groups.map((g) => g.blocks.length),
    [2, 2, 0],
  );
  // The encoder's stem (width 8) is downsampled as is; the decoder's last width (16) reaches the output.
  assert.deepEqual(
    l.encoder.groups.map((g) => g.down && [g.down.k, g.down.nIn, g.down.nOut]),
    [[4, 8, 8], [4, 16, 16], undefined],
  );
  assert.deepEqual(
    l.decoder.groups.map((g) => g.transpose && [g.transpose.k, g.transpose.nIn, g.transpose.nOut]),
    [[4, 32, 32], [4, 16, 16], undefined],
  );
  assert.equal(l.decoder.output.nIn, 16);
  assert.equal(l.encoder.output.nIn, 32);
  assert.equal(l.postGain, 1 / 36, 'the paper gain 1/(groups·blocksPerGroup)² unless resblockGain is set');
  assert.equal(dvaeLayout({ ...strided, resblockGain: 1 }).postGain, 1);
  const specs = dvaeParamSpecs(strided);
  assert.equal(
    dvaeParameterCount(strided),
    specs.reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0),
  );
  const m = new Dvae(strided, { seed: 5 });
  const tokens = m.encode(images(3, 16));
  assert.equal(tokens.length, 3 * 4 * 4);
  assert.equal(m.decode(tokens).length, 3 * 16 * 16 * 3);
  m.dispose();
});

test('dvae: quantizer "continuous" decodes softmax(logits), no noise, no KL term', () => {
  const cfg = { ...tiny, quantizer: 'continuous' as const };
  const m = new Dvae(cfg, { seed: 6, trainable: true });
  const n = 2;
  const x255 = tf.tensor4d(images(n, 16), [n, 16, 16, 3], 'int32').toFloat() as tf.Tensor4D;
  const noise = gumbelNoise(1, 0, 0, [n, 4, 4, 32]);
  const t = m.lossTerms(x255, noise, 0.5, 3);
  assert.equal(t.kl.dataSync()[0], 0);
  const expected = tf.tidy(() => {
    const x = mapPixels(x255, 0.1) as tf.Tensor4D;
    return pixelNll(m, x, tf.softmax(m.encoderLogits(x)) as tf.Tensor4D)
      .mean()
      .dataSync()[0]!;
  });
  assert.ok(Math.abs(t.loss.dataSync()[0]! - expected) < 1e-5, `${t.loss.dataSync()[0]} vs ${expected}`);
  // Noise and τ play no part: the relaxed reconstruction is the same for any seed.
  assert.deepEqual(m.reconstructRelaxed(images(n, 16), 1, 1), m.reconstructRelaxed(images(n, 16), 0.1, 2));
  tf.dispose([x255, noise, t.loss, t.recon, t.kl, t.mse, t.codes]);
  m.dispose();
});

test('dvae: edgeWeight counts the pixels with another colour in their 3×3 neighbourhood 1 + w times; recon stays unweighted', () => {
  const n = 2;
  const px = images(n, 16);
  // Edge pixels, computed here from the bytes: some pixel of the 3×3 neighbourhood differs by > 2 % of φ's range.
  const edge = new Float32Array(n * 16 * 16);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < 16; y++)
      for (let x = 0; x < 16; x++)
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++) {
            const u = x + dx;
            const v = y + dy;
            if (u < 0 || v < 0 || u >= 16 || v >= 16) continue;
            for (let c = 0; c < 3; c++) {
              const a = px[((i * 16 + y) * 16 + x) * 3 + c]!;
              const b = px[((i * 16 + v) * 16 + u) * 3 + c]!;
              if (Math.abs(a - b) * 0.8 > 0.02 * 255) edge[(i * 16 + y) * 16 + x] = 1;
            }
          }
  const edges = edge.reduce((a, b) => a + b, 0);
  assert.ok(edges > 20 && edges < (n * 256) / 2, `${edges} edge pixels`);
  const x255 = tf.tensor4d(px, [n, 16, 16, 3], 'int32').toFloat() as tf.Tensor4D;
  const noise = gumbelNoise(1, 0, 0, [n, 4, 4, 32]);
  const cfg = { ...tiny, quantizer: 'continuous' as const };
  const plain = new Dvae(cfg, { seed: 6 });
  const weighted = new Dvae({ ...cfg, edgeWeight: 9 }, { seed: 6 });
  const a = plain.lossTerms(x255, noise, 0.5, 3);
  const b = weighted.lossTerms(x255, noise, 0.5, 3);
  const expected = tf.tidy(() => {
    const x = mapPixels(x255, 0.1) as tf.Tensor4D;
    const w = tf.tensor4d(edge, [n, 16, 16, 1]).mul(9).add(1);
    const nll = pixelNll(plain, x, tf.softmax(plain.encoderLogits(x)) as tf.Tensor4D);
    return nll.mul(w).mean().dataSync()[0]!;
  });
  const got = b.loss.dataSync()[0]!;
  assert.ok(Math.abs(got - expected) < 1e-4 * Math.abs(expected), `${got} vs ${expected}`);
  assert.notEqual(got, a.loss.dataSync()[0]);
  assert.equal(b.recon.dataSync()[0], a.recon.dataSync()[0], 'recon reports the plain likelihood');
  tf.dispose([x255, noise, a.loss, a.recon, a.kl, a.mse, a.codes, b.loss, b.recon, b.kl, b.mse, b.codes]);
  plain.dispose();
  weighted.dispose();
});

test('dvae: quantizer "vq" encodes each cell to its nearest codebook row; codebook and encoder both learn', () => {
  const cfg = { ...tiny, quantizer: 'vq' as const };
  const specs = dvaeParamSpecs(cfg);
  const out = specs.find((s) => s.name === 'encoder.output.w')!;
  assert.deepEqual(out.shape.slice(2), [dvaeLayout(cfg).encoder.input.nOut * 4, dvaeLayout(cfg).nInit]);
  const m = new Dvae(cfg, { seed: 2, trainable: true });
  const n = 2;
  const x255 = tf.tensor4d(images(n, 16), [n, 16, 16, 3], 'int32').toFloat() as tf.Tensor4D;
  const noise = gumbelNoise(1, 0, 0, [n, 4, 4, 32]);
  const t = m.lossTerms(x255, noise, 1, 1);
  assert.equal(t.kl.dataSync()[0], 0);
  // encode() picks the nearest code by the same distances the loss used.
  const codes = [...t.codes.dataSync()];
  assert.deepEqual([...m.encode(images(n, 16))], codes);
  const { grads } = tf.variableGrads(() => m.lossTerms(x255, noise, 1, 1).loss, m.variables);
  const norm = (name: string) =>
    grads[m.variables[m.specs.findIndex((p) => p.name === name)]!.name]!.abs().max().dataSync()[0]!;
  assert.ok(norm('encoder.output.w') > 0, 'the encoder learns (straight-through and commitment)');
  assert.ok(norm('decoder.input.w') > 0, 'the codebook learns');
  tf.dispose([x255, noise, t.loss, t.recon, t.kl, t.mse, t.codes, ...Object.values(grads)]);
  m.dispose();
});

test('dvae: codeLogitScale makes the logits s·cos(features, code) (+ bias), bounded by s', () => {
  const s = 4;
  const plain = new Dvae(tiny, { seed: 9 });
  const cos = Dvae.fromParams({ ...tiny, codeLogitScale: s }, plain.params());
  const x = tf.tidy(() => mapPixels(tf.tensor4d(images(3, 16), [3, 16, 16, 3], 'int32').toFloat(), 0.1));
  const logits = cos.encoderLogits(x as tf.Tensor4D);
  const v = logits.dataSync();
  assert.ok(
    v.every((l) => Math.abs(l) <= s + 1e-4),
    `max |logit| ${Math.max(...v.map(Math.abs))}`,
  );
  assert.ok(Math.max(...v.map(Math.abs)) > 0.1 * s, 'not degenerate');
  const tokens = Int32Array.from({ length: 16 }, (_, i) => i);
  assert.deepEqual(cos.decode(tokens), plain.decode(tokens), 'the decoder is untouched');
  tf.dispose([x, logits]);
  plain.dispose();
  cos.dispose();
});

test('dvae: straightThrough decodes the one-hot argmax of the relaxed sample, gradients still reach the encoder', () => {
  const cfg = { ...tiny, straightThrough: true };
  const m = new Dvae(cfg, { seed: 4, trainable: true });
  const n = 2;
  const x255 = tf.tensor4d(images(n, 16), [n, 16, 16, 3], 'int32').toFloat() as tf.Tensor4D;
  const noise = gumbelNoise(1, 3, 0, [n, 4, 4, 32]);
  const t = m.lossTerms(x255, noise, 0.9, 0);
  const hard = tf.tidy(() => {
    const logits = m.encoderLogits(mapPixels(x255, 0.1) as tf.Tensor4D);
    const z = tf.oneHot(logits.add(noise).argMax(-1), 32, 1, 0, 'int32').toFloat() as tf.Tensor4D;
    return pixelNll(m, mapPixels(x255, 0.1) as tf.Tensor4D, z)
      .mean()
      .dataSync()[0]!;
  });
  assert.ok(Math.abs(t.recon.dataSync()[0]! - hard) < 1e-4, `${t.recon.dataSync()[0]} vs ${hard}`);
  const { grads } = tf.variableGrads(() => m.lossTerms(x255, noise, 0.9, 0).loss, m.variables);
  const enc = grads[m.variables[m.specs.findIndex((p) => p.name === 'encoder.output.w')]!.name]!;
  assert.ok(enc.abs().max().dataSync()[0]! > 0, 'the encoder gets a gradient through the relaxation');
  tf.dispose([x255, noise, t.loss, t.recon, t.kl, t.mse, t.codes, ...Object.values(grads)]);
  m.dispose();
});

test('dvae: diversityWeight adds w·(log K − H(mean softmax)) to the loss', () => {
  const w = 0.3;
  const plain = new Dvae(tiny, { seed: 6 });
  const div = Dvae.fromParams({ ...tiny, diversityWeight: w }, plain.params());
  const n = 2;
  const x255 = tf.tensor4d(images(n, 16), [n, 16, 16, 3], 'int32').toFloat() as tf.Tensor4D;
  const noise = gumbelNoise(2, 1, 0, [n, 4, 4, 32]);
  const a = plain.lossTerms(x255, noise, 0.8, 1.5);
  const b = div.lossTerms(x255, noise, 0.8, 1.5);
  const q = tf.tidy(() =>
    tf
      .softmax(plain.encoderLogits(mapPixels(x255, 0.1) as tf.Tensor4D))
      .reshape([-1, 32])
      .mean(0)
      .dataSync(),
  );
  let h = 0;
  for (const p of q) h -= p * Math.log(p);
  const expected = w * (Math.log(32) - h);
  const got = b.loss.dataSync()[0]! - a.loss.dataSync()[0]!;
  assert.ok(expected > 0 && Math.abs(got - expected) < 1e-5, `${got} vs ${expected}`);
  tf.dispose([x255, noise, ...Object.values(a), ...Object.values(b)]);
  plain.dispose();
  div.dispose();
});

test("dvae: cellColorWeight adds w·MSE(a 1×1 head on each cell's code, the cell's mean colour) and its head", () => {
  const w = 2;
  const plain = new Dvae(tiny, { seed: 6 });
  const withHead = new Dvae({ ...tiny, cellColorWeight: w }, { seed: 6 });
  const names = withHead.specs.map((s) => s.name);
  assert.deepEqual(
    names.slice(0, plain.specs.length),
    plain.specs.map((s) => s.name),
    'old order kept',
  );
  assert.deepEqual(
    withHead.specs.slice(plain.specs.length).map((s) => [s.name, s.shape.join('x')]),
    [
      ['decoder.cellColor.w', `1x1x${tiny.codebookSize}x3`],
      ['decoder.cellColor.b', '3'],
    ],
  );
  // The same encoder/decoder weights, a known head: the difference of the two losses is the colour term.
  const head = withHead.params().slice(plain.specs.length);
  const cfg = { ...tiny, quantizer: 'continuous' as const };
  const a = Dvae.fromParams(cfg, plain.params());
  const b = Dvae.fromParams({ ...cfg, cellColorWeight: w }, [...plain.params(), ...head]);
  const n = 2;
  const x255 = tf.tensor4d(images(n, 16), [n, 16, 16, 3], 'int32').toFloat() as tf.Tensor4D;
  const noise = gumbelNoise(2, 1, 0, [n, 4, 4, 32]);
  const la = a.lossTerms(x255, noise, 0.8, 1.5);
  const lb = b.lossTerms(x255, noise, 0.8, 1.5);
  const expected = tf.tidy(() => {
    const x = mapPixels(x255, 0.1) as tf.Tensor4D;
    const z = tf.softmax(a.encoderLogits(x)); // the continuous quantizer's z
    const [hw, hb] = head.map((h) => tf.tensor(h));
    const pred = tf.matMul(z.reshape([-1, 32]), hw!.reshape([32, 3])).add(hb!);
    const cells = tf.avgPool(x, 4, 4, 'valid').reshape([-1, 3]);
    return pred.sub(cells).square().mean().mul(w).dataSync()[0]!;
  });
  const got = lb.loss.dataSync()[0]! - la.loss.dataSync()[0]!;
  assert.ok(expected > 0 && Math.abs(got - expected) < 1e-5, `${got} vs ${expected}`);
  assert.throws(
    () => new Dvae({ ...tiny, quantizer: 'vq', cellColorWeight: 1 }, { seed: 0 }),
    /cellColorWeight = 1: needs the gumbel or continuous quantizer/,
  );
  tf.dispose([x255, noise, ...Object.values(la), ...Object.values(lb)]);
  for (const m of [plain, withHead, a, b]) m.dispose();
});

test('dvae: the loss is the paper negative ELBO per pixel-channel, checked in float64', () => {
  const m = new Dvae(tiny, { seed: 5 });
  const n = 2;
  const R = 16;
  const x = images(n, R);
  const tau = 0.7;
  const beta = 2.5;
  const check = tf.tidy(() => {
    const x255 = tf.tensor4d(x, [n, R, R, 3], 'int32').toFloat() as tf.Tensor4D;
    const noise = gumbelNoise(1, 2, 0, [n, 4, 4, 32]);
    const t = m.lossTerms(x255, noise, tau, beta);
    const logits = m.encoderLogits(mapPixels(x255, 0.1) as tf.Tensor4D).dataSync();
    const z = tf.softmax(
      m
        .encoderLogits(mapPixels(x255, 0.1) as tf.Tensor4D)
        .add(noise)
        .div(tau),
    ) as tf.Tensor4D;
    const stats = m.decoderStats(z).dataSync();
    return {
      loss: t.loss.dataSync()[0]!,
      recon: t.recon.dataSync()[0]!,
      kl: t.kl.dataSync()[0]!,
      logits,
      stats,
    };
  });
  // Reference in float64 from docs/model.md's formulas.
  let nll = 0;
  for (let i = 0; i < n * R * R; i++) {
    for (let c = 0; c < 3; c++) {
      const v = (0.8 * x[i * 3 + c]!) / 255 + 0.1;
      const mu = check.stats[i * 6 + c]!;
      const b = Math.exp(check.stats[i * 6 + 3 + c]!);
      nll -= Math.log(Math.exp(-Math.abs(Math.log(v / (1 - v)) - mu) / b) / (2 * b * v * (1 - v)));
    }
  }
  let kl = 0;
  for (let cell = 0; cell < n * 16; cell++) {
    const l = Array.from(check.logits.subarray(cell * 32, cell * 32 + 32));
    const mx = Math.max(...l);
    const z = l.reduce((s, v) => s + Math.exp(v - mx), 0);
    for (const v of l) {
      const q = Math.exp(v - mx) / z;
      kl += q * Math.log(q * 32);
    }
  }
  const perPixelChannel = R * R * 3;
  const close = (a: number, b: number, what: string) =>
    assert.ok(Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  close(check.recon, nll / n / perPixelChannel, 'recon');
  close(check.kl, kl / n / 16, 'kl per cell');
  close(check.loss, (nll + beta * kl) / n / perPixelChannel, 'loss');
  m.dispose();
});

test('dvae: the loss and its gradient are batch means (so rank averages give the global mean)', () => {
  const m = new Dvae(tiny, { seed: 9, trainable: true });
  const x = images(2, 16);
  const noise = gumbelNoise(4, 0, 0, [2, 4, 4, 32]).arraySync() as number[][][][];
  const gradsOf = (idx: number[]) =>
    tf.tidy(() => {
      const x255 = tf.tensor4d(
        idx.flatMap((i) => [...x.subarray(i * 768, (i + 1) * 768)]),
        [idx.length, 16, 16, 3],
      );
      const nz = tf.tensor4d(idx.map((i) => noise[i]!));
      const { value, grads } = tf.variableGrads(() => m.lossTerms(x255, nz, 0.9, 1.5).loss, m.variables);
      return [value, ...m.variables.map((v) => grads[v.name]!)].map((t) => t.dataSync().slice());
    });
  const both = gradsOf([0, 1]);
  const a = gradsOf([0]);
  const b = gradsOf([1]);
  both.forEach((g, i) => {
    for (let j = 0; j < g.length; j++) {
      const mean = (a[i]![j]! + b[i]![j]!) / 2;
      assert.ok(
        Math.abs(g[j]! - mean) <= 1e-4 * Math.max(1e-3, Math.abs(mean)) + 1e-7,
        `tensor ${i}[${j}]: ${g[j]} vs mean ${mean}`,
      );
    }
  });
  m.dispose();
});

/** Learned 4×4 stride-2 resampling on both sides, no blocks at full resolution. */
const strided: DvaeConfig = {
  ...deeper,
  downsample: 'conv',
  upsample: 'transpose',
  fullResolutionBlocks: false,
};

test(`dvae: every parameter gradient on ${['wasm', ...native].join(' and ')} matches cpu (relative error < 1e-4)`, () => {
  for (const cfg of [tiny, deeper, strided]) {
    const m = new Dvae(cfg, { seed: 2, trainable: true });
    const n = 3;
    const x = images(n, 16);
    const noise = gumbelNoise(7, 1, 0, [n, cfg.grid, cfg.grid, cfg.codebookSize]).dataSync().slice();
    const run = (backend: string) => {
      // Both backends are initialized above, so the switch is synchronous; the assert checks it.
      void tf.setBackend(backend);
      assert.equal(tf.getBackend(), backend);
      return tf.tidy(() => {
        const x255 = tf.tensor4d(x, [n, 16, 16, 3], 'int32').toFloat() as tf.Tensor4D;
        const nz = tf.tensor4d(noise, [n, cfg.grid, cfg.grid, cfg.codebookSize]);
        const { grads } = tf.variableGrads(() => m.lossTerms(x255, nz, 0.8, 0.5).loss, m.variables);
        return m.variables.map((v) => grads[v.name]!.dataSync().slice());
      });
    };
    const cpu = run('cpu');
    for (const backend of ['wasm', ...native]) {
      const other = run(backend);
      m.specs.forEach((s, i) => {
        let diff = 0;
        let scale = 0;
        for (let j = 0; j < cpu[i]!.length; j++) {
          diff = Math.max(diff, Math.abs(other[i]![j]! - cpu[i]![j]!));
          scale = Math.max(scale, Math.abs(cpu[i]![j]!));
        }
        assert.ok(scale > 0, `${s.name}: zero gradient`);
        assert.ok(diff / scale < 1e-4, `${backend}: ${s.name}: relative error ${diff / scale}`);
      });
    }
    void tf.setBackend('wasm');
    m.dispose();
  }
});

test('dvae: bad configs, images, tokens and parameter arrays are named', () => {
  assert.throws(
    () => new Dvae({ ...tiny, hidden: 6 }),
    (e: unknown) => e instanceof DvaeConfigError && e.field === 'hidden',
  );
  assert.throws(
    () => new Dvae({ ...tiny, grid: 8 }),
    (e: unknown) =>
      e instanceof DvaeConfigError &&
      e.field === 'grid' &&
      /resolution \/ 2\^\(groups−1\) = 4/.test(e.message),
  );
  const m = new Dvae(tiny);
  assert.throws(
    () => m.encode(new Uint8Array(100)),
    (e: unknown) => e instanceof DvaeInputError && /not a positive multiple of 768/.test(e.message),
  );
  assert.throws(
    () => m.decode(new Int32Array(16).fill(32)),
    (e: unknown) => e instanceof DvaeInputError && /token 32 at index 0 is outside \[0, 32\)/.test(e.message),
  );
  assert.throws(() => m.decode(new Int32Array(15)), /not a positive multiple of 16/);
  const params = m.params();
  params[3] = new Float32Array(1);
  assert.throws(
    () => Dvae.fromParams(tiny, params),
    (e: unknown) =>
      e instanceof DvaeInputError && /encoder\.group0\.block0\.conv1\.b has 1 values/.test(e.message),
  );
  assert.throws(() => Dvae.fromParams(tiny, params.slice(1)), /arrays for/);
  m.dispose();
});

test('dvae: no tensors leak from encode, decode, loss and gradients', () => {
  const m = new Dvae(tiny, { trainable: true });
  const x = images(3, 16);
  const once = () => {
    m.decode(m.encode(x));
    tf.tidy(() => {
      const x255 = tf.tensor4d(x, [3, 16, 16, 3], 'int32').toFloat() as tf.Tensor4D;
      tf.variableGrads(() => m.lossTerms(x255, gumbelNoise(0, 0, 0, [3, 4, 4, 32]), 1, 0).loss, m.variables);
    });
  };
  once();
  const before = tf.memory().numTensors;
  once();
  once();
  assert.equal(tf.memory().numTensors, before);
  m.dispose();
});

test('dvae: logit-Laplace density integrates to 1 on (0, 1)', () => {
  for (const [mu, lnB] of [
    [0, 0],
    [1.5, -1],
    [-2, 0.5],
  ] as const) {
    const steps = 200_000;
    const xs = Float32Array.from({ length: steps }, (_, i) => (i + 0.5) / steps);
    const nll = tf.tidy(() =>
      logitLaplaceNll(tf.tensor1d(xs), tf.fill([steps], mu), tf.fill([steps], lnB)).dataSync(),
    );
    let integral = 0;
    for (let i = 0; i < steps; i++) integral += Math.exp(-nll[i]!) / steps;
    assert.ok(Math.abs(integral - 1) < 2e-3, `μ=${mu}, ln b=${lnB}: ∫f = ${integral}`);
  }
});

test('dvae: encoderFeatures gives each cell its argmax code (as encode does) and its features, chunk by chunk', () => {
  const m = new Dvae(tiny, { seed: 3 });
  const R = tiny.resolution;
  const images = Uint8Array.from({ length: 5 * R * R * 3 }, (_, i) => (i * 37) % 256);
  const layout = dvaeLayout(tiny);
  const params = m.params().map((a, i) => tf.tensor(a, dvaeParamSpecs(tiny)[i]!.shape));
  const whole = encoderFeatures(tiny, layout, params, images);
  const chunked = encoderFeatures(tiny, layout, params, images, 2);
  tf.dispose(params);
  assert.deepEqual(whole.codes, m.encode(images));
  assert.deepEqual(chunked.codes, whole.codes);
  assert.deepEqual(chunked.features, whole.features);
  assert.equal(whole.features.length % whole.codes.length, 0);
  assert.ok(whole.features.some((v) => v > 0));
  m.dispose();
});
