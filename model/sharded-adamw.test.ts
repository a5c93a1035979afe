import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { AdamW, globalNorm } from './adamw.ts';
import { assembleEma, ShardedAdamW, type ParamPiece } from './sharded-adamw.ts';
import { StateMismatchError } from './state-io.ts';
import type { UpdateRule } from './trainer.ts';

const shapes = [[6, 4], [5], [3, 3]];
const numel = shapes.map((s) => s.reduce((a, b) => a * b, 1));
const names = ['w', 'b', 'u'];
const rule: UpdateRule = {
  lr: 0.01,
  beta1: 0.9,
  beta2: 0.96,
  eps: 1e-8,
  weightDecay: 0.045,
  emaDecay: 0.99,
  decay: [true, false, true],
  maxGradNorm: 2,
};
const grad = (step: number, i: number) =>
  Float32Array.from({ length: numel[i]! }, (_, k) => Math.sin(1.3 * k + 0.7 * step + i) * (1 + k));
const init = (i: number) => Float32Array.from({ length: numel[i]! }, (_, k) => Math.cos(k + 2 * i) / 3);

/** Two ranks' pieces: rows split between them (the bias element-wise). */
function piecesOf(rank: number, ranks: number): ParamPiece[] {
  return numel.map((n, index) => {
    const unit = shapes[index]!.length > 1 ? shapes[index]!.at(-1)! : 1;
    const units = n / unit;
    const from = Math.floor((rank * units) / ranks) * unit;
    const to = Math.floor(((rank + 1) * units) / ranks) * unit;
    return { index, name: names[index]!, offset: from, length: to - from };
  });
}

for (const backend of ['cpu', 'wasm']) {
  test(`sharded-adamw: two shards update exactly what AdamW does on the whole, on ${backend}`, async () => {
    await tf.setBackend(backend);
    const theta = tf.variable(tf.tensor1d(Float32Array.from(shapes.flatMap((_, i) => Array.from(init(i))))));
    const whole = new AdamW(
      theta,
      names.map((name, i) => ({ name, size: numel[i]!, decay: rule.decay[i]! })),
      rule,
    );
    const params = shapes.map((_, i) => init(i));
    const shards = [0, 1].map((r) => new ShardedAdamW(piecesOf(r, 2), params));
    for (let step = 0; step < 6; step++) {
      const grads = shapes.map((_, i) => grad(step, i));
      const r = whole.apply(grads, rule.lr, { maxGradNorm: rule.maxGradNorm });
      const norm = Math.sqrt(
        shards.reduce(
          (s, sh) =>
            s +
            ShardedAdamW.sumSquares(
              sh.pieces.map((p) => grads[p.index]!.subarray(p.offset, p.offset + p.length)),
            ),
          0,
        ),
      );
      assert.ok(Math.abs(norm - globalNorm(grads)) < 1e-9 * norm);
      const scale = norm > rule.maxGradNorm! ? rule.maxGradNorm! / norm : 1;
      assert.equal(r.clipped, scale !== 1);
      for (const sh of shards) {
        const out = sh.apply(
          sh.pieces.map((p) => grads[p.index]!.subarray(p.offset, p.offset + p.length)),
          rule,
          scale,
        );
        sh.pieces.forEach((p, k) => params[p.index]!.set(out.params[k]!, p.offset));
      }
    }
    const got = theta.dataSync();
    let at = 0;
    numel.forEach((n, i) => {
      const v = got.subarray(at, (at += n));
      assert.deepEqual(Array.from(params[i]!), Array.from(v), `param ${names[i]} bit for bit`);
    });
    const ema = assembleEma(
      shards.map((s) => s.saveState()),
      numel,
    );
    whole
      .emaArrays()
      .forEach((e, i) => assert.deepEqual(Array.from(ema[i]!), Array.from(e), `EMA ${names[i]}`));
    whole.dispose();
    theta.dispose();
  });
}

test('sharded-adamw: a state saved as two shards loads into three, and into one, exactly', () => {
  const params = shapes.map((_, i) => init(i));
  const two = [0, 1].map((r) => new ShardedAdamW(piecesOf(r, 2), params));
  for (const sh of two)
    sh.apply(
      sh.pieces.map((p) => grad(0, p.index).subarray(p.offset, p.offset + p.length)),
      rule,
    );
  const saved = two.map((s) => s.saveState());
  const full = assembleEma(saved, numel);
  for (const ranks of [3, 1]) {
    const now = [...Array(ranks).keys()].map((r) => new ShardedAdamW(piecesOf(r, ranks), params));
    for (const s of now) s.loadState(saved, params);
    assert.equal(now[0]!.updates, 1);
    assert.deepEqual(
      assembleEma(
        now.map((s) => s.saveState()),
        numel,
      ).map((a) => Array.from(a)),
      full.map((a) => Array.from(a)),
    );
  }
  const lonely = new ShardedAdamW(piecesOf(0, 1), params);
  assert.throws(
    () => lonely.loadState([saved[0]!], params),
    StateMismatchError,
    'half the elements are missing',
  );
  assert.throws(() => assembleEma([saved[1]!], numel), StateMismatchError);
});
