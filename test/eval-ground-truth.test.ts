// The zero-shot evaluation against generators whose answer is known: the set's own renderer (must score
// 100 %), a generator that ignores the caption (must score exactly the share of captions it happens to
// match), and random tokens through a real, untrained dVAE (near chance).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { loadSpec } from '../config/index.ts';
import { rngFor } from '../random/index.ts';
import {
  HELD_OUT_COMPOSITIONS,
  isHeldOut,
  JITTER_PX,
  parseShapesCaption,
  renderShape,
  TRAIN_COMPOSITIONS,
  type ShapeComposition,
} from '../data/shapes.ts';
import { Dvae, initTfBackend } from '../model/index.ts';
import {
  ATTRIBUTES,
  dvaeAdapter,
  EvalImageError,
  EvalOptionError,
  evaluateShapes,
  formatEvalTable,
  type EvalDvae,
  type GenerateFn,
} from '../eval/index.ts';

const spec = loadSpec('tiny');
const R = spec.dvae.resolution; // 16

/** Renders what each caption asks for, with a seeded jitter: a perfect generator. */
const renderer: GenerateFn = async (prompts, n, seed) =>
  prompts.map((p, k) => {
    const c = parseShapesCaption(p);
    assert.ok(c, `caption '${p}' names every attribute`);
    const out = new Uint8Array(n * R * R * 3);
    for (let i = 0; i < n; i++) {
      const rng = rngFor(seed, k, i);
      const jitter = {
        dx: rng.int(2 * JITTER_PX + 1) - JITTER_PX,
        dy: rng.int(2 * JITTER_PX + 1) - JITTER_PX,
      };
      out.set(renderShape({ ...c, jitter }, R), i * R * R * 3);
    }
    return out;
  });

test('eval: the renderer as generator scores 100 % on seen and held-out prompts; random tokens stay near chance', async (t) => {
  await initTfBackend();
  const dvae = dvaeAdapter(new Dvae(spec.dvae, { seed: 3 })); // untrained: the baseline's decoder
  try {
    const before = tf.memory().numTensors;
    const prompts: string[] = [];
    const spy: GenerateFn = async (p, n, seed) => {
      prompts.push(...p);
      return renderer(p, n, seed);
    };
    const r = await evaluateShapes({ generate: spy, dvae, seed: 7 });
    assert.equal(tf.memory().numTensors, before, 'the evaluation leaks no tensors');
    for (const line of formatEvalTable(r).split('\n')) t.diagnostic(line);
    for (const g of [r.seen, r.heldOut]) {
      assert.equal(g.images, 108);
      for (const k of [...ATTRIBUTES, 'all'] as const)
        assert.equal(g.accuracy[k], 1, `${k}: ${formatEvalTable(r)}`);
    }
    // Seen prompts never name a held-out pair; the held-out prompts name each held-out composition once.
    const asked = prompts.map((p) => parseShapesCaption(p)!);
    assert.ok(asked.slice(0, 108).every((c) => !isHeldOut(c)));
    const key = (c: ShapeComposition) => `${c.color} ${c.shape} ${c.size} ${c.position}`;
    assert.deepEqual(new Set(asked.slice(108).map(key)), new Set(HELD_OUT_COMPOSITIONS.map(key)));
    // Random tokens through an untrained decoder: nowhere near the renderer.
    assert.equal(r.random.images, 108);
    assert.ok(r.random.accuracy.all < 0.05, formatEvalTable(r));
    assert.equal(r.reconstruction.images, HELD_OUT_COMPOSITIONS.length);
    assert.ok(
      Number.isFinite(r.reconstructionMse) && r.reconstructionMse > 0.01,
      `untrained dVAE MSE ${r.reconstructionMse}`,
    );
    // One image of every seen composition, through the same untrained dVAE.
    assert.equal(r.seenReconstruction.images, TRAIN_COMPOSITIONS.length);
    assert.ok(r.seenReconstruction.accuracy.all < 0.05, formatEvalTable(r));
    assert.equal(r.items.length, 3 * 108 + 108 + TRAIN_COMPOSITIONS.length);
    assert.match(
      formatEvalTable(r),
      /\| held-out compositions \(zero-shot\) \| 108 \| 100\.0% \| 100\.0% \| 100\.0% \| 100\.0% \| 100\.0% \|/,
    );
  } finally {
    dvae.dispose();
  }
});

test('eval: a generator that ignores the caption scores exactly the captions it happens to match', async () => {
  // Always a small red square at the centre; the dVAE is the identity, so reconstruction is perfect.
  const fixed: ShapeComposition = { color: 'red', shape: 'square', size: 'small', position: 'center' };
  const ignore: GenerateFn = async (prompts, n) =>
    prompts.map(() => {
      const out = new Uint8Array(n * R * R * 3);
      for (let i = 0; i < n; i++) out.set(renderShape(fixed, R), i * R * R * 3);
      return out;
    });
  const identity: EvalDvae = {
    resolution: R,
    grid: 4,
    codebookSize: 2,
    // Token 0 → white image, 1 → the fixed shape: a decoder whose "random" images are known.
    decode: (tokens, n) => {
      const out = new Uint8Array(n * R * R * 3).fill(255);
      for (let i = 0; i < n; i++) if (tokens[i * 16] === 1) out.set(renderShape(fixed, R), i * R * R * 3);
      return out;
    },
    reconstruct: (rgb) => rgb.slice(),
  };
  const n = 40;
  const prompts: string[] = [];
  const r = await evaluateShapes({
    generate: async (p, k, s) => (prompts.push(...p), ignore(p, k, s)),
    dvae: identity,
    n,
    seed: 11,
  });
  const asked = prompts.map((p) => parseShapesCaption(p)!);
  const share = (cs: ShapeComposition[], k: keyof ShapeComposition) =>
    cs.filter((c) => c[k] === fixed[k]).length / cs.length;
  for (const k of ATTRIBUTES) {
    assert.equal(r.seen.accuracy[k], share(asked.slice(0, n), k), `seen ${k}`);
    assert.equal(r.heldOut.accuracy[k], share(asked.slice(n), k), `held-out ${k}`);
  }
  assert.equal(r.heldOut.accuracy.shape, share(asked.slice(n), 'shape'));
  // "Random" images: white ones are judged empty, never right.
  assert.equal(r.random.empty + r.items.filter((i) => i.group === 'random' && i.judged !== null).length, n);
  assert.ok(r.random.empty > 0);
  assert.equal(r.reconstructionMse, 0);
  for (const k of [...ATTRIBUTES, 'all'] as const) {
    assert.equal(r.reconstruction.accuracy[k], 1);
    assert.equal(r.seenReconstruction.accuracy[k], 1);
  }
  // The seen reconstructions are of seen compositions only, every one once.
  const rebuilt = r.items.filter((i) => i.group === 'seenReconstruction').map((i) => i.expected);
  assert.equal(rebuilt.length, TRAIN_COMPOSITIONS.length);
  assert.ok(rebuilt.every((c) => !isHeldOut(c)));
  const key = (c: ShapeComposition) => `${c.color} ${c.shape} ${c.size} ${c.position}`;
  assert.equal(new Set(rebuilt.map(key)).size, TRAIN_COMPOSITIONS.length);
});

test('eval: bad options and wrong-sized images are named', async () => {
  const dvae: EvalDvae = {
    resolution: R,
    grid: 4,
    codebookSize: 8,
    decode: (_t, n) => new Uint8Array(n * R * R * 3),
    reconstruct: (x) => x,
  };
  await assert.rejects(
    evaluateShapes({ generate: renderer, dvae, n: 0 }),
    (e: unknown) => e instanceof EvalOptionError && e.option === 'n',
  );
  await assert.rejects(
    evaluateShapes({ generate: renderer, dvae, seed: -1 }),
    (e: unknown) => e instanceof EvalOptionError && e.option === 'seed',
  );
  const short: GenerateFn = async (p) => p.map(() => new Uint8Array(10));
  await assert.rejects(
    evaluateShapes({ generate: short, dvae, n: 2 }),
    (e: unknown) => e instanceof EvalImageError && e.got === 10 && e.expected === R * R * 3,
  );
  const fewer: GenerateFn = async (p, n, s) => (await renderer(p, n, s)).slice(1);
  await assert.rejects(evaluateShapes({ generate: fewer, dvae, n: 2 }), EvalImageError);
});
