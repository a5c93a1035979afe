// The native backend built by infra/native/install-tfjs-node.sh (tfjs-node 4.22's binding against a newer
// libtensorflow than it was written for) computes what tfjs's reference cpu backend computes, on the ops
// and gradients our models use, without leaking tensors. Skipped, saying why, when it is not installed:
// the install is optional and `npm install` removes it (see infra/native/README.md).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { transformerStep } from '../bench/native.ts';

async function loadNative(): Promise<string | undefined> {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      await import(pkg); // a variable specifier: optional, absent from package.json
      return pkg;
    } catch {
      // try the next one
    }
  }
  return undefined;
}
const nativePkg = await loadNative();
const skip = nativePkg ? false : 'tfjs-node is not installed (run infra/native/install-tfjs-node.sh)';

/** Runs `fn` on one backend and returns its outputs as plain arrays, checking that it leaks nothing. */
async function on(backend: 'tensorflow' | 'cpu', fn: () => tf.Tensor[]): Promise<Float32Array[]> {
  assert.ok(await tf.setBackend(backend), `backend ${backend} failed to start`);
  const before = tf.memory().numTensors;
  const outs = fn();
  const arrays = await Promise.all(outs.map(async (t) => Float32Array.from(await t.data())));
  tf.dispose(outs);
  assert.equal(tf.memory().numTensors, before, `${backend} leaked tensors`);
  return arrays;
}

function assertClose(actual: Float32Array, expected: Float32Array, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    assert.ok(
      err <= tol * (1 + Math.abs(expected[i])),
      `${what}[${i}]: native ${actual[i]} vs cpu ${expected[i]}`,
    );
  }
}

async function parity(fn: () => tf.Tensor[], tol: number, what: string): Promise<void> {
  const native = await on('tensorflow', fn);
  const cpu = await on('cpu', fn);
  native.forEach((n, i) => assertClose(n, cpu[i], tol, `${what} output ${i}`));
}

test('native: matmul, conv2d and gather with their gradients match the cpu backend', { skip }, async () => {
  assert.equal(tf.getBackend(), 'tensorflow', `${nativePkg} did not make 'tensorflow' the backend`);
  await parity(
    () =>
      tf.tidy(() => {
        const a = tf.randomNormal([33, 65], 0, 1, 'float32', 1);
        const b = tf.randomNormal([65, 17], 0, 1, 'float32', 2);
        const [ga, gb] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.matMul(x, y).square().sum())([a, b]);
        return [tf.matMul(a, b), ga, gb];
      }),
    1e-4,
    'matmul',
  );
  await parity(
    () =>
      tf.tidy(() => {
        const x = tf.randomNormal<tf.Rank.R4>([2, 9, 9, 3], 0, 1, 'float32', 3); // [N, H, W, Cin]
        const f = tf.randomNormal<tf.Rank.R4>([3, 3, 3, 4], 0, 1, 'float32', 4); // [kh, kw, Cin, Cout]
        // Conv2DBackpropFilter and -Input: what tfjs-backend-wasm lacks.
        const conv = (a: tf.Tensor, k: tf.Tensor): tf.Tensor =>
          tf
            .conv2d(a as tf.Tensor4D, k as tf.Tensor4D, 2, 'same')
            .relu()
            .sum();
        const [gx, gf] = tf.grads(conv)([x, f]);
        return [tf.conv2d(x, f, 2, 'same'), gx, gf];
      }),
    1e-4,
    'conv2d',
  );
  await parity(
    () =>
      tf.tidy(() => {
        const table = tf.randomNormal([10, 6], 0, 1, 'float32', 5);
        const ids = tf.tensor1d([3, 1, 3, 9, 0, 3], 'int32');
        // gather's gradient is UnsortedSegmentSum, also missing in wasm: repeated ids must add up.
        const g = tf.grad((t: tf.Tensor) =>
          tf
            .gather(t, ids)
            .mul(tf.range(0, 36).reshape([6, 6]))
            .sum(),
        )(table);
        return [tf.gather(table, ids), g];
      }),
    1e-5,
    'gather',
  );
});

test('native: three Adam steps of a small transformer give the cpu backend losses', { skip }, async () => {
  const shape = { batch: 2, tokens: 12, width: 32, layers: 2, heads: 4, vocab: 40 };
  const losses = async (backend: 'tensorflow' | 'cpu'): Promise<number[]> => {
    assert.ok(await tf.setBackend(backend));
    const before = tf.memory().numTensors;
    const model = transformerStep(shape, 7);
    const out: number[] = [];
    for (let i = 0; i < 3; i++) out.push(await model.step());
    model.dispose();
    assert.equal(tf.memory().numTensors, before, `${backend}: the training step leaked tensors`);
    return out;
  };
  const native = await losses('tensorflow');
  const cpu = await losses('cpu');
  assert.ok(native[2] < native[0], `native loss did not fall: ${native.join(', ')}`);
  assertClose(Float32Array.from(native), Float32Array.from(cpu), 1e-4, 'loss');
});
