// Every fused op, on every backend that starts here (native TensorFlow only when tfjs-node is installed),
// gives the values and gradients of the plain tfjs ops it replaces, computed by autodiff on the reference
// cpu backend; and leaks no tensor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initTfBackend } from '../tf-backend.ts';
import { ParamVector } from '../param-vector.ts';
import { attention } from './attention.ts';
import { conv2dBias } from './conv.ts';
import { softmaxCrossEntropy } from './cross-entropy.ts';
import { dense, denseGelu } from './dense.ts';
import { layerNorm } from './layer-norm.ts';
import { gelu } from './gelu.ts';
import { nativeOps, onNativeOp } from './native.ts';
import { relu } from './relu.ts';
import { upsample2x } from './upsample.ts';

const backends: string[] = [];
for (const b of ['cpu', 'wasm', 'tensorflow']) {
  try {
    await initTfBackend(b);
    backends.push(b);
  } catch {
    // not installed here (tfjs-node is optional): covered where it is
  }
}

/** Values of `fn` on a backend, checking it leaks nothing. */
async function on(backend: string, fn: () => tf.Tensor[]): Promise<Float32Array[]> {
  await initTfBackend(backend);
  const before = tf.memory().numTensors;
  const outs = tf.tidy(fn);
  const arrays = outs.map((t) => Float32Array.from(t.dataSync()));
  tf.dispose(outs);
  assert.equal(tf.memory().numTensors, before, `${backend} leaked tensors`);
  return arrays;
}

function assertClose(actual: Float32Array, expected: Float32Array, tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const err = Math.abs(actual[i]! - expected[i]!);
    assert.ok(err <= tol * (1 + Math.abs(expected[i]!)), `${what}[${i}]: ${actual[i]} vs ${expected[i]}`);
  }
}

/** The op's output and the gradients of Σ out·r with respect to each float input, on every backend,
 *  against the reference composition's on cpu. `shapes` are random float inputs; `extra` (e.g. int32
 *  labels, a mask) are passed after them and not differentiated. */
async function check(
  what: string,
  shapes: number[][],
  op: (...xs: tf.Tensor[]) => tf.Tensor,
  reference: (...xs: tf.Tensor[]) => tf.Tensor,
  tol = 1e-5,
  extra: () => tf.Tensor[] = () => [],
): Promise<void> {
  const run = (f: (...xs: tf.Tensor[]) => tf.Tensor) => () => {
    const xs = shapes.map((s, i) => tf.randomNormal(s, 0, 1, 'float32', 10 + i));
    const more = extra();
    const out = f(...xs, ...more);
    const r = tf.randomNormal(out.shape, 0, 1, 'float32', 99);
    const grads = tf.grads((...ys: tf.Tensor[]) =>
      f(...ys, ...more)
        .mul(r)
        .sum(),
    )(xs);
    return [out, ...grads];
  };
  const expected = await on('cpu', run(reference));
  for (const b of backends) {
    const got = await on(b, run(op));
    got.forEach((g, i) =>
      assertClose(g, expected[i]!, tol, `${what} on ${b}, ${i ? `gradient ${i - 1}` : 'output'}`),
    );
  }
}

test(`ops: conv2dBias (linear and ReLU) matches conv2d + bias (+ relu), values and gradients (${backends.join(', ')})`, async () => {
  for (const activation of ['linear', 'relu'] as const) {
    for (const [x, w] of [
      [
        [2, 5, 5, 3],
        [3, 3, 3, 4],
      ],
      [
        [3, 4, 4, 8],
        [1, 1, 8, 2],
      ],
    ]) {
      await check(
        `conv2dBias ${activation} ${JSON.stringify(w)}`,
        [x!, w!, [w![3]!]],
        (a, f, b) => conv2dBias(a as tf.Tensor4D, f as tf.Tensor4D, b!, activation),
        (a, f, b) => {
          const y = tf.conv2d(a as tf.Tensor4D, f as tf.Tensor4D, 1, 'same').add(b!);
          return activation === 'relu' ? y.relu() : y;
        },
        1e-4,
      );
    }
  }
});

test(`ops: relu, gelu and upsample2x match their plain forms, values and gradients (${backends.join(', ')})`, async () => {
  await check(
    'relu',
    [[4, 7]],
    (x) => relu(x!),
    (x) => tf.relu(x!),
  );
  await check(
    'gelu',
    [[6, 9]],
    (x) => gelu(x!.mul(2)),
    (x) => {
      const y = x!.mul(2);
      return y.mul(tf.tanh(y.add(y.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI))).add(1)).mul(0.5);
    },
  );
  await check(
    'upsample2x',
    [[2, 3, 4, 5]],
    (x) => upsample2x(x as tf.Tensor4D),
    (x) =>
      x!
        .reshape([2, 3, 1, 4, 1, 5])
        .mul(tf.ones([1, 1, 2, 1, 2, 1]))
        .reshape([2, 6, 8, 5]),
  );
});

test(`ops: a ParamVector splits θ into parameter tensors and gathers their gradients back (${backends.join(', ')})`, async () => {
  const specs = [
    { name: 'a', shape: [2, 3], kind: 'matrix' as const },
    { name: 'b', shape: [4], kind: 'bias' as const },
    { name: 'c', shape: [1, 2, 2, 1], kind: 'matrix' as const },
  ];
  const values = specs.map((s, k) =>
    Float32Array.from({ length: s.shape.reduce((x, y) => x * y, 1) }, (_, i) => k + i / 10),
  );
  for (const b of backends) {
    await initTfBackend(b);
    const before = tf.memory().numTensors;
    const pv = new ParamVector(specs, values, `ops_test_pv_${b}`);
    const { value, grads } = tf.variableGrads(() => {
      const [a, bb, c] = pv.tensors();
      assert.deepEqual([a!.shape, bb!.shape, c!.shape], [[2, 3], [4], [1, 2, 2, 1]]);
      // d/dθ of Σ a² + 3·Σ b (c unused: its gradient is zero)
      return a!.square().sum().add(bb!.sum().mul(3)) as tf.Scalar;
    }, [pv.theta]);
    const g = grads[pv.theta.name]!.dataSync();
    assert.deepEqual(Array.from(g), [
      ...Array.from(values[0]!, (v) => Math.fround(2 * v)),
      3,
      3,
      3,
      3,
      0,
      0,
      0,
      0,
    ]);
    assert.deepEqual(pv.arrays(), values);
    tf.dispose([value, ...Object.values(grads)]);
    pv.dispose();
    assert.equal(tf.memory().numTensors, before, `${b}: ParamVector leaked tensors`);
  }
});

test(`ops: dense, layerNorm, attention and softmaxCrossEntropy match the transformer's plain ops (${backends.join(', ')})`, async () => {
  await check(
    'dense',
    [[7, 5], [5, 3], [3]],
    (x, w, b) => dense(x as tf.Tensor2D, w!, b!),
    (x, w, b) => tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D).add(b!),
    1e-4,
  );
  const plainLayerNorm = (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
    const { mean, variance } = tf.moments(x, -1, true);
    return x
      .sub(mean)
      .mul(tf.rsqrt(variance.add(1e-5)))
      .mul(g)
      .add(b);
  };
  await check(
    'layerNorm',
    [[2, 3, 8], [8], [8]],
    (x, g, b) => layerNorm(x!, g!, b!, 1e-5),
    (x, g, b) => plainLayerNorm(x!, g!, b!),
    1e-4,
  );
  // Outside a gradient tape (the output above and here), native TensorFlow runs one oneDNN kernel for a
  // 2-D layer norm and for dense + GELU; under the tape (the gradients), the ops.
  await check(
    'layerNorm of rows',
    [[6, 8], [8], [8]],
    (x, g, b) => layerNorm(x!, g!, b!, 1e-5),
    (x, g, b) => plainLayerNorm(x!, g!, b!),
    1e-4,
  );
  await check(
    'denseGelu',
    [[7, 5], [5, 6], [6]],
    (x, w, b) => denseGelu(x as tf.Tensor2D, w!, b!),
    (x, w, b) => {
      const y = tf.matMul(x as tf.Tensor2D, w as tf.Tensor2D).add(b!);
      return y.mul(tf.tanh(y.add(y.pow(3).mul(0.044715)).mul(Math.sqrt(2 / Math.PI))).add(1)).mul(0.5);
    },
    1e-4,
  );
  // 2 sequences of 5 positions, 2 heads of width 3; a causal mask.
  const [n, S, H, dh] = [2, 5, 2, 3];
  const d = H * dh;
  const causal = () => [
    tf.tensor2d(
      Array.from({ length: S * S }, (_, i) => (i % S <= Math.floor(i / S) ? 0 : -1e9)),
      [S, S],
    ),
  ];
  const heads = (x: tf.Tensor) => x.reshape([n, S, H, dh]).transpose([0, 2, 1, 3]);
  await check(
    'attention',
    [[n * S, 3 * d]],
    (qkv, mask) => attention(qkv as tf.Tensor2D, mask as tf.Tensor2D, S, H),
    (qkv, mask) => {
      const q = heads(qkv!.slice([0, 0], [-1, d]));
      const k = heads(qkv!.slice([0, d], [-1, d]));
      const v = heads(qkv!.slice([0, 2 * d], [-1, d]));
      const p = tf.softmax(
        tf
          .matMul(q, k, false, true)
          .mul(1 / Math.sqrt(dh))
          .add(mask!),
      );
      return tf
        .matMul(p, v)
        .transpose([0, 2, 1, 3])
        .reshape([n * S, d]);
    },
    1e-4,
    causal,
  );
  await check(
    'softmaxCrossEntropy',
    [[6, 5]],
    (logits, labels) => softmaxCrossEntropy(logits as tf.Tensor2D, labels as tf.Tensor1D),
    (logits, labels) =>
      tf
        .logSoftmax(logits!)
        .mul(tf.oneHot(labels as tf.Tensor1D, 5, 1, 0, 'int32').cast('float32'))
        .sum(1)
        .neg(),
    1e-5,
    () => [tf.tensor1d([0, 4, 2, 2, 1, 3], 'int32')],
  );
});

test(
  'ops: outside a gradient tape, native TensorFlow runs one oneDNN kernel for a layer norm of rows and for dense + GELU',
  {
    skip: !backends.includes('tensorflow') && 'tfjs-node is not installed here',
  },
  async () => {
    await initTfBackend('tensorflow');
    const kernels = (f: () => tf.Tensor): string[] => {
      const names: string[] = [];
      onNativeOp((name) => names.push(name));
      try {
        tf.tidy(f);
      } finally {
        onNativeOp(undefined);
      }
      return names;
    };
    const [x, g, b, w] = [tf.randomNormal([4, 8]), tf.ones([8]), tf.zeros([8]), tf.randomNormal([8, 16])];
    const b16 = tf.zeros([16]);
    assert.deepEqual(
      kernels(() => layerNorm(x, g, b, 1e-5)),
      ['_MklLayerNorm'],
    );
    assert.deepEqual(
      kernels(() => denseGelu(x as tf.Tensor2D, w, b16)),
      ['_MklNativeFusedMatMul'],
    );
    // Under a tape the ops run (their backward needs the intermediates).
    const taped = kernels(() => tf.grad((y: tf.Tensor) => layerNorm(y, g, b, 1e-5).sum())(x));
    assert.ok(!taped.includes('_MklLayerNorm') && taped.includes('Rsqrt'), taped.join(', '));
    tf.dispose([x, g, b, w, b16]);
  },
);

test(
  'ops: the native int32 inputs are kept by value, and past the cache bound the old ones are released, not lost',
  {
    skip: !backends.includes('tensorflow') && 'tfjs-node is not installed here',
  },
  async () => {
    await initTfBackend('tensorflow');
    const native = nativeOps()!;
    const backend = tf.backend();
    const x = tf.ones([1, 1, 1, 1]);
    const before = backend.numDataIds();
    // 100 × 100 distinct [h, w] size inputs: the cache (4,096) starts over twice, releasing the first lot.
    for (let h = 1; h <= 100; h++) {
      for (let w = 1; w <= 100; w++) {
        const y = native.resizeNearest(x, h, w);
        if (w === h) assert.deepEqual([...y.shape, y.dataSync()[h * w - 1]], [1, h, w, 1, 1]);
        y.dispose();
      }
    }
    // A repeated size is the same handle: nothing new is written.
    const held = backend.numDataIds();
    native.resizeNearest(x, 100, 100).dispose();
    assert.equal(backend.numDataIds(), held);
    // Bounded: at most two generations of the cache, fewer than the 10,000 written.
    assert.ok(held - before <= 2 * 4096, `${held - before} int inputs kept`);
    x.dispose();
  },
);
