import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import {
  AdamW,
  AdamWConfigError,
  GradientShapeError,
  decaysByDefault,
  globalNorm,
  type AdamWConfig,
} from './adamw.ts';

await tf.setBackend('cpu');

const cfg: AdamWConfig = { beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, emaDecay: 0.9 };

/** Float64 reference of one AdamW step, written from the formulas in adamw.ts's header. */
function reference(
  p: number[],
  g: number[],
  m: number[],
  v: number[],
  ema: number[],
  t: number,
  lr: number,
  decay: boolean,
  c: AdamWConfig,
): void {
  for (let i = 0; i < p.length; i++) {
    m[i] = c.beta1 * m[i]! + (1 - c.beta1) * g[i]!;
    v[i] = c.beta2 * v[i]! + (1 - c.beta2) * g[i]! * g[i]!;
    if (decay) p[i] = p[i]! - lr * c.weightDecay * p[i]!;
    p[i] = p[i]! - (lr * (m[i]! / (1 - c.beta1 ** t))) / (Math.sqrt(v[i]! / (1 - c.beta2 ** t)) + c.eps);
    ema[i] = c.emaDecay * ema[i]! + (1 - c.emaDecay) * p[i]!;
  }
}

/** An optimizer over parameters with these initial values, held back to back in one vector θ. */
function flatOpt(
  init: ArrayLike<number>[],
  decay: boolean[],
  config: AdamWConfig = cfg,
  names = init.map((_, i) => `p${i}`),
): { opt: AdamW; theta: tf.Variable; param(i: number): Float32Array } {
  const flat = Float32Array.from(init.flatMap((a) => Array.from(a)));
  const theta = tf.variable(tf.tensor1d(flat), true, `adamw_test_theta_${Math.random()}`);
  const opt = new AdamW(
    theta,
    init.map((a, i) => ({ name: names[i]!, size: a.length, decay: decay[i]! })),
    config,
  );
  const offsets = init.map((_, i) => init.slice(0, i).reduce((s, a) => s + a.length, 0));
  return {
    opt,
    theta,
    param: (i) => (theta.dataSync() as Float32Array).slice(offsets[i]!, offsets[i]! + init[i]!.length),
  };
}

function grad(step: number, n: number, salt: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(1.3 * i + 0.7 * step + salt) * (1 + i));
}

function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rel: number,
  what: string,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    assert.ok(Math.abs(a - e) <= rel * Math.max(1e-3, Math.abs(e)), `${what}[${i}]: ${a} vs ${e}`);
  }
}

test('adamw: five steps match a float64 reference, with the decay mask respected', () => {
  const init = [
    [0.5, -1, 2, 0.25, 3, -0.75],
    [1, 2, 3],
  ];
  const decay = [true, false];
  const { opt, theta, param } = flatOpt(init, decay);
  const ref = init.map((a) => ({ p: [...a], m: a.map(() => 0), v: a.map(() => 0), ema: [...a] }));
  for (let step = 0; step < 5; step++) {
    const lr = 0.01 * (1 + step);
    const grads = init.map((a, i) => grad(step, a.length, i));
    const r = opt.apply(grads, lr);
    assert.equal(r.updates, step + 1);
    assert.equal(r.skipped, false);
    ref.forEach((s, i) => reference(s.p, [...grads[i]!], s.m, s.v, s.ema, step + 1, lr, decay[i]!, cfg));
  }
  init.forEach((_, i) => assertClose(param(i), ref[i]!.p, 1e-5, `param ${i}`));
  opt.emaArrays().forEach((e, i) => assertClose(e, ref[i]!.ema, 1e-5, `ema ${i}`));
  // The masked parameter got no decay: rerun the reference with decay on and see it differ.
  const decayed = { p: [...init[1]!], m: [0, 0, 0], v: [0, 0, 0], ema: [...init[1]!] };
  for (let step = 0; step < 5; step++)
    reference(
      decayed.p,
      [...grad(step, 3, 1)],
      decayed.m,
      decayed.v,
      decayed.ema,
      step + 1,
      0.01 * (1 + step),
      true,
      cfg,
    );
  assert.ok(Math.abs(param(1)[2]! - decayed.p[2]!) > 1e-4);
  opt.dispose();
  theta.dispose();
});

test('adamw: a flat gradient, consecutive views of one buffer and separate arrays give the same bits', () => {
  const init = [
    [0.5, -1, 2, 0.25],
    [1, 2, 3],
  ];
  const run = (grads: (s: number) => Float32Array[]) => {
    const { opt, theta } = flatOpt(init, [true, false]);
    for (let s = 0; s < 3; s++) opt.apply(grads(s), 0.01);
    const out = [theta.dataSync().slice(), ...opt.emaArrays()];
    opt.dispose();
    theta.dispose();
    return out;
  };
  const separate = (s: number) => [grad(s, 4, 0), grad(s, 3, 1)];
  const flat = (s: number) => {
    const f = new Float32Array(7);
    f.set(grad(s, 4, 0));
    f.set(grad(s, 3, 1), 4);
    return f;
  };
  const a = run(separate);
  assert.deepEqual(
    run((s) => [flat(s)]),
    a,
  );
  assert.deepEqual(
    run((s) => {
      const f = flat(s);
      return [f.subarray(0, 4), f.subarray(4)];
    }),
    a,
  );
});

test('adamw: no tensors leak across steps, save and load', () => {
  const { opt, theta: variable } = flatOpt([new Float32Array(12).fill(1)], [true], cfg, ['w']);
  opt.apply([grad(0, 12, 0)], 1e-3);
  const before = tf.memory().numTensors;
  for (let s = 1; s < 4; s++) opt.apply([grad(s, 12, 0)], 1e-3, { maxGradNorm: 1 });
  const g = tf.tensor(grad(9, 12, 0), [4, 3]);
  opt.apply([g], 1e-3);
  g.dispose();
  opt.loadStateArrays(new Map(opt.stateArrays()), opt.updates);
  globalNorm([variable]);
  assert.equal(tf.memory().numTensors, before);
  opt.dispose();
  variable.dispose();
});

test('adamw: clipping rescales to maxGradNorm; non-finite gradients skip the update entirely', () => {
  const { opt, theta: variable } = flatOpt([[1, 1]], [false], { ...cfg, weightDecay: 0 }, ['w']);
  // With clipping the first step is g/|g|·4 → Adam's first step is lr·sign(g) regardless; check norm reporting.
  const r = opt.apply([new Float32Array([30, 40])], 0.1, { maxGradNorm: 4 });
  assert.equal(r.gradNorm, 50);
  assert.equal(r.clipped, true);
  const m = new Map(opt.stateArrays()).get('w.m')!;
  assertClose(m, [0.1 * 30 * (4 / 50), 0.1 * 40 * (4 / 50)], 1e-6, 'first moment of the clipped gradient');
  const snapshot = new Map(opt.stateArrays());
  const params = variable.dataSync().slice();
  const skipped = opt.apply([new Float32Array([NaN, 1])], 0.1);
  assert.equal(skipped.skipped, true);
  assert.equal(skipped.updates, 1);
  assert.deepEqual(variable.dataSync(), params);
  assert.deepEqual(new Map(opt.stateArrays()), snapshot);
  assert.equal(opt.apply([new Float32Array([Infinity, 1])], 0.1).skipped, true);
  opt.dispose();
  variable.dispose();
});

test('adamw: resume from saved state is bit-identical to an uninterrupted run', () => {
  const init = tf.randomNormal([5, 7], 0, 1, 'float32', 3);
  const run = (
    steps: number,
    from?: { params: Float32Array; state: Map<string, Float32Array>; updates: number },
  ) => {
    const { opt, theta: variable } = flatOpt([from ? from.params : init.dataSync()], [true], cfg, ['w']);
    if (from) opt.loadStateArrays(from.state, from.updates);
    const start = from?.updates ?? 0;
    for (let s = start; s < start + steps; s++) opt.apply([grad(s, 35, 2)], 1e-2 / (1 + s));
    const out = {
      params: variable.dataSync().slice() as Float32Array,
      state: new Map(opt.stateArrays()),
      updates: opt.updates,
    };
    opt.dispose();
    variable.dispose();
    return out;
  };
  const straight = run(6);
  const resumed = run(3, run(3));
  assert.equal(resumed.updates, 6);
  assert.deepEqual(resumed.params, straight.params);
  assert.deepEqual(resumed.state, straight.state);
  init.dispose();
});

test('adamw: bad gradients and hyper-parameters are named', () => {
  const variable = tf.variable(tf.zeros([4]), true, 'adamw_test_bad');
  assert.throws(
    () => new AdamW(variable, [{ name: 'w', size: 4, decay: true }], { ...cfg, beta2: 1 }),
    (e: unknown) => e instanceof AdamWConfigError && e.field === 'beta2',
  );
  assert.throws(
    () =>
      new AdamW(
        variable,
        [
          { name: 'w', size: 2, decay: true },
          { name: 'w', size: 2, decay: true },
        ],
        cfg,
      ),
    /unique/,
  );
  assert.throws(
    () => new AdamW(variable, [{ name: 'w', size: 3, decay: true }], cfg),
    (e: unknown) => e instanceof AdamWConfigError && e.field === 'theta',
  );
  const opt = new AdamW(variable, [{ name: 'w', size: 4, decay: true }], cfg);
  assert.throws(
    () => opt.apply([], 1e-3),
    (e: unknown) => e instanceof GradientShapeError && /0 gradients for 1 parameters/.test(e.message),
  );
  assert.throws(() => opt.apply([new Float32Array(3)], 1e-3), /gradient of w has 3 values, parameter has 4/);
  assert.throws(
    () => opt.apply([new Float32Array(4)], NaN),
    (e: unknown) => e instanceof AdamWConfigError && e.field === 'lr',
  );
  assert.throws(() => opt.loadStateArrays(new Map(), 0), /missing optimizer array "w.m"/);
  opt.dispose();
  variable.dispose();
});

test('adamw: decay applies to matrices only by default', () => {
  assert.equal(decaysByDefault('matrix'), true);
  for (const k of ['gain', 'bias', 'embedding', 'unembedding'] as const)
    assert.equal(decaysByDefault(k), false);
});
