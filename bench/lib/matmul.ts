// The same backend's float32 matmul throughput, measured beside a model benchmark so its GFLOP/s can be
// read as a fraction of what the backend can do at all.
import * as tf from '@tensorflow/tfjs';

export function matmulGflops(size = 512, reps = 5): number {
  const a = tf.randomNormal([size, size], 0, 1, 'float32', 1);
  const b = tf.randomNormal([size, size], 0, 1, 'float32', 2);
  tf.matMul(a, b).dispose(); // warm-up: kernel setup, wasm memory growth
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) {
    const c = tf.matMul(a, b);
    c.dataSync();
    c.dispose();
  }
  const s = (performance.now() - t0) / 1000;
  tf.dispose([a, b]);
  return (2 * size ** 3 * reps) / s / 1e9;
}
