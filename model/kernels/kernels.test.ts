import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import { initTfBackend } from '../tf-backend.ts';
import { setIm2colBudget } from './conv2d-backprop-filter.ts';
import { normals } from '../../random/index.ts';

await initTfBackend('cpu');
await initTfBackend('wasm');

/** Switches to an already-initialized backend. tf.setBackend is async but switches synchronously when
 *  the backend needs no init (both are initialized above); the assert makes sure it did. */
function use(backend: 'cpu' | 'wasm'): void {
  void tf.setBackend(backend);
  assert.equal(tf.getBackend(), backend);
}

/** Runs `fn` on a backend and returns its outputs as plain arrays (inputs rebuilt there from arrays). */
function on(backend: 'cpu' | 'wasm', fn: () => tf.Tensor[]): Float32Array[] {
  use(backend);
  const outs = tf.tidy(fn);
  const arrays = outs.map((t) => t.dataSync() as Float32Array).map((a) => Float32Array.from(a));
  tf.dispose(outs);
  return arrays;
}

function relErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / Math.max(scale, 1e-30);
}

let salt = 0;
const rand = (shape: number[]) =>
  normals(
    { seed: 11, stream: 99, step: salt++, rank: 0 },
    shape.reduce((a, b) => a * b, 1),
  );

interface ConvCase {
  name: string;
  x: number[];
  w: number[];
  stride: number;
  pad: 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];
}
const cases: ConvCase[] = [
  { name: '7×7 input conv, 3→8, same', x: [2, 16, 16, 3], w: [7, 7, 3, 8], stride: 1, pad: 'same' },
  { name: '3×3, 16→16, same', x: [3, 12, 12, 16], w: [3, 3, 16, 16], stride: 1, pad: 'same' },
  { name: '3×3, 5→7, valid', x: [2, 9, 11, 5], w: [3, 3, 5, 7], stride: 1, pad: 'valid' },
  { name: '1×1, 24→40', x: [2, 8, 8, 24], w: [1, 1, 24, 40], stride: 1, pad: 'same' },
  { name: '3×3 stride 2, 4→6, same', x: [2, 9, 9, 4], w: [3, 3, 4, 6], stride: 2, pad: 'same' },
  {
    name: '5×3 explicit pads, 3→5',
    x: [1, 10, 8, 3],
    w: [5, 3, 3, 5],
    stride: 1,
    pad: [
      [0, 0],
      [2, 1],
      [0, 2],
      [0, 0],
    ],
  },
];

for (const c of cases) {
  test(`kernels: conv2d gradients on wasm match cpu (${c.name})`, () => {
    const xs = rand(c.x);
    const ws = rand(c.w);
    const up = rand([1]); // a nonuniform upstream gradient: weight each output by a fixed pattern
    const run = () => {
      const x = tf.tensor4d(xs, c.x as [number, number, number, number]);
      const w = tf.tensor4d(ws, c.w as [number, number, number, number]);
      const f = (xx: tf.Tensor, ww: tf.Tensor) => {
        const y = tf.conv2d(xx as tf.Tensor4D, ww as tf.Tensor4D, c.stride, c.pad);
        const weights = tf.sin(
          tf
            .range(0, y.size)
            .reshape(y.shape)
            .mul(0.37 + up[0]! * 0.01),
        );
        return y.mul(weights).sum();
      };
      const [dx, dw] = tf.grads(f)([x, w]);
      return [dx!, dw!];
    };
    const [dxC, dwC] = on('cpu', run);
    const [dxW, dwW] = on('wasm', run);
    assert.ok(relErr(dwW!, dwC!) < 1e-4, `filter gradient rel err ${relErr(dwW!, dwC!)}`);
    assert.ok(relErr(dxW!, dxC!) < 1e-4, `input gradient rel err ${relErr(dxW!, dxC!)}`);
  });
}

test('kernels: Conv2DBackpropFilter on wasm is the same when im2col is split into batch chunks', () => {
  const xs = rand([5, 8, 8, 4]);
  const dys = rand([5, 8, 8, 6]);
  const run = () => [
    tf
      .engine()
      .runKernel(
        'Conv2DBackpropFilter',
        { x: tf.tensor4d(xs, [5, 8, 8, 4]), dy: tf.tensor4d(dys, [5, 8, 8, 6]) },
        { strides: 1, pad: 'same', dataFormat: 'NHWC', filterShape: [3, 3, 4, 6] },
      ) as tf.Tensor,
  ];
  const [whole] = on('wasm', run);
  const old = setIm2colBudget(2 * 64 * 36); // two images per chunk: chunks of 2, 2, 1
  try {
    const [chunked] = on('wasm', run);
    const [cpu] = on('cpu', run);
    assert.ok(relErr(chunked!, whole!) < 1e-6);
    assert.ok(relErr(chunked!, cpu!) < 1e-4, `rel err ${relErr(chunked!, cpu!)}`);
  } finally {
    setIm2colBudget(old);
  }
});

test('kernels: max-pool gradient on wasm matches cpu, ties routed to the first maximum', () => {
  // Plateaus (flat background, ReLU zeros) make ties the common case.
  const xs = Float32Array.from(rand([2, 8, 8, 5]), (v) => Math.max(0, Math.round(v)));
  const up = rand([2, 8, 8, 5]);
  for (const [size, stride, pad] of [
    [2, 2, 'valid'],
    [3, 2, 'same'],
    [3, 1, 'same'],
  ] as const) {
    const run = () => {
      const x = tf.tensor4d(xs, [2, 8, 8, 5]);
      return [
        tf.grad((xx: tf.Tensor) => {
          const y = tf.maxPool(xx as tf.Tensor4D, size, stride, pad);
          return y.mul(tf.tensor(up.slice(0, y.size), y.shape)).sum();
        })(x),
      ];
    };
    const [c] = on('cpu', run);
    const [w] = on('wasm', run);
    assert.ok(relErr(w!, c!) < 1e-6, `maxPool ${size}/${stride}/${pad}: rel err ${relErr(w!, c!)}`);
  }
  // A window of four equal values sends its whole gradient to its top-left element.
  const [g] = on('wasm', () => [
    tf.grad((xx: tf.Tensor) => tf.maxPool(xx as tf.Tensor4D, 2, 2, 'valid').sum())(tf.ones([1, 2, 2, 1])),
  ]);
  assert.deepEqual([...g!], [1, 0, 0, 0]);
});

test('kernels: gather gradient (UnsortedSegmentSum) on wasm matches cpu, repeated indices included', () => {
  const table = rand([10, 6]);
  const ids = [3, 1, 3, 9, 0, 3, 7, 1];
  const run = () => {
    const t = tf.tensor2d(table, [10, 6]);
    const idx = tf.tensor1d(ids, 'int32');
    const g0 = tf.grad((tt: tf.Tensor) =>
      tf
        .gather(tt, idx, 0)
        .mul(tf.range(1, 49).reshape([8, 6]))
        .sum(),
    )(t);
    const g1 = tf.grad((tt: tf.Tensor) =>
      tf
        .gather(tt, tf.tensor1d([5, 0, 5], 'int32'), 1)
        .square()
        .sum(),
    )(t);
    return [g0, g1];
  };
  const [a0, a1] = on('cpu', run);
  const [b0, b1] = on('wasm', run);
  assert.ok(relErr(b0!, a0!) < 1e-6);
  assert.ok(relErr(b1!, a1!) < 1e-6);
  // Row 3 was gathered three times (positions 0, 2, 5): its gradient is the sum of those rows of weights.
  assert.equal(b0![3 * 6], 1 + 13 + 31);
});

test('kernels: UnsortedSegmentSum on wasm drops out-of-range ids and keeps trailing dims', () => {
  const run = () => [
    tf.unsortedSegmentSum(
      tf.tensor2d([1, 2, 3, 4, 5, 6, 7, 8], [4, 2]),
      tf.tensor1d([1, -1, 1, 5], 'int32'),
      3,
    ),
  ];
  const [w] = on('wasm', run);
  assert.deepEqual([...w!], [0, 0, 1 + 5, 2 + 6, 0, 0]);
  const [c] = on('cpu', run);
  assert.deepEqual([...c!], [...w!]);
});

test('kernels: no tensors or wasm heap blocks leak from the custom kernels', () => {
  use('wasm');
  const x = tf.tensor4d(rand([2, 8, 8, 4]), [2, 8, 8, 4]);
  const w = tf.tensor4d(rand([3, 3, 4, 4]), [3, 3, 4, 4]);
  const step = () =>
    tf.tidy(() =>
      tf
        .grads((a: tf.Tensor, b: tf.Tensor) =>
          tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, 1, 'same').sum(),
        )([x, w])
        .map((g) => g.sum())
        .reduce((p, q) => p.add(q))
        .dataSync(),
    );
  step();
  const tensors = tf.memory().numTensors;
  const dataIds = tf.engine().backend.numDataIds();
  for (let i = 0; i < 3; i++) step();
  assert.equal(tf.memory().numTensors, tensors);
  assert.equal(tf.engine().backend.numDataIds(), dataIds);
  tf.dispose([x, w]);
});

test('kernels: wasm Identity shares memory safely (a clone outlives its source; assign does not touch clones)', () => {
  use('wasm');
  const ids = tf.engine().backend.numDataIds();
  const a = tf.tensor1d([1, 2, 3]);
  const c = a.clone();
  assert.equal(tf.engine().backend.numDataIds(), ids + 1, 'the clone shares the buffer');
  a.dispose();
  assert.deepEqual([...c.dataSync()], [1, 2, 3]);
  const v = tf.variable(tf.tensor1d([4, 5]), true, 'kernels_test_identity');
  const saved = v.clone();
  v.assign(tf.tensor1d([6, 7]));
  assert.deepEqual([...saved.dataSync()], [4, 5]);
  assert.deepEqual([...v.dataSync()], [6, 7]);
  tf.dispose([c, v, saved]);
});
