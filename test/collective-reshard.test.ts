// PowerSGD across a world-size change over a real nats-server: re-sharded error buffers (the old ranks'
// mean, on every new rank) make the next step's update the one the old world would have made; resetting
// them would not.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ParamSpec } from '../model/index.ts';
import { PowerSgd, PowerSgdStateError, reshardPowerSgdState } from '../collective/index.ts';
import { openRanks, values } from './collective-helpers.ts';

const specs: ParamSpec[] = [
  { name: 'layer0.tall.w', shape: [12, 5], kind: 'matrix' },
  { name: 'layer0.wide.w', shape: [4, 9], kind: 'matrix' },
  { name: 'layer1.b', shape: [4], kind: 'bias' },
];
const numel = new Map(specs.map((s) => [s.name, s.shape.reduce((a, b) => a * b, 1)]));
const cfg = { rank: 2, startIter: 0, minCompressionRate: 1 };
const grads = (step: number, rank: number) =>
  specs.map((s, i) => values(numel.get(s.name)!, 100 * step + 10 * rank + i));
const mean = (a: Float32Array[], b: Float32Array[]) => a.map((x, i) => x.map((v, k) => (v + b[i]![k]!) / 2));

async function step(ps: PowerSgd[], perRank: Float32Array[][], s: number): Promise<Float32Array[]> {
  const ranks = await openRanks(ps.length);
  try {
    const out = await Promise.all(ps.map((p, r) => p.reduce(ranks.groups[r]!, perRank[r]!, s)));
    return out[0]!.grads;
  } finally {
    await ranks.close();
  }
}

function maxRelDiff(a: Float32Array[], b: Float32Array[]): number {
  let worst = 0;
  a.forEach((x, i) =>
    x.forEach((v, k) => {
      worst = Math.max(worst, Math.abs(v - b[i]![k]!) / (Math.abs(v) + 1e-3));
    }),
  );
  return worst;
}

test('collective: re-sharded error buffers carry a 2-rank run into 3 ranks with the same next update', async () => {
  const two = [0, 1].map((r) => new PowerSgd(specs, cfg, { rank: r, worldSize: 2, seed: 4 }));
  for (let s = 0; s < 4; s++) await step(two, [grads(s, 0), grads(s, 1)], s);
  const saved = two.map((p) => ({ bytes: p.saveState() }));
  const next = [grads(4, 0), grads(4, 1)];
  const kept = await step(two, next, 4); // what W = 2 does at step 4

  const three = [0, 1, 2].map((r) => new PowerSgd(specs, cfg, { rank: r, worldSize: 3, seed: 4 }));
  for (const p of three) p.loadState(reshardPowerSgdState(saved, { psgd: p, numel }));
  const avg = mean(next[0]!, next[1]!); // three ranks whose mean gradient is the two ranks' mean
  const moved = await step(three, [avg, avg, avg], 4);
  const diff = maxRelDiff(kept, moved);
  assert.ok(diff < 1e-4, `W = 3 after re-sharding differs from W = 2 by ${diff}`);

  const reset = [0, 1, 2].map((r) => new PowerSgd(specs, cfg, { rank: r, worldSize: 3, seed: 4 }));
  const dropped = await step(reset, [avg, avg, avg], 4);
  assert.ok(maxRelDiff(kept, dropped) > 1e-2, 'resetting the error buffers changes the update');
  assert.equal(three[1]!.counters().steps, two[0]!.counters().steps, 'counters carry on');
});

test('collective: re-sharding refuses states of another run', () => {
  const a = new PowerSgd(specs, cfg, { rank: 0, worldSize: 2, seed: 4 });
  const b = new PowerSgd(specs, cfg, { rank: 0, worldSize: 3, seed: 5 });
  assert.throws(
    () => reshardPowerSgdState([{ bytes: a.saveState() }], { psgd: b, numel }),
    (e: unknown) => e instanceof PowerSgdStateError && /seed 4, this run uses 5/.test(e.message),
  );
});
