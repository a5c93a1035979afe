import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CodeUsage, copyCodes, restartCodes } from './code-restart.ts';

test('code restart: usage comes from non-zero gradient rows; dead codes pair with the busiest live ones', () => {
  const K = 6;
  const E = 2;
  const u = new CodeUsage(K);
  const grad = (rows: Record<number, number>) => {
    const g = new Float32Array(K * E);
    for (const [k, v] of Object.entries(rows)) g[Number(k) * E] = v;
    return g;
  };
  // Codes 0, 1, 2 are used (2 the most), 3 and 5 never, 4 only in the first update.
  u.observe(grad({ 0: 1, 1: 1, 2: 5, 4: 1 }));
  for (let i = 0; i < 3; i++) u.observe(grad({ 0: 1, 1: 2, 2: 5 }));
  assert.deepEqual([...u.idle], [0, 0, 0, 4, 3, 4]);
  // Window 4: codes 3 and 5 are dead; 4 was used within it. Sources: busiest first (2, then 1).
  assert.deepEqual(u.plan(4), [
    { dead: 3, source: 2 },
    { dead: 5, source: 1 },
  ]);
  assert.deepEqual([...u.load], [0, 0, 0, 0, 0, 0], 'the window restarts');
  assert.equal(u.idle[3], 0);
  // Never more restarts than half the live codes.
  const v = new CodeUsage(4);
  v.observe(grad({ 0: 1 }).subarray(0, 8));
  assert.equal(v.plan(1).length, 0, 'one live code cannot be split into three');
});

test('code restart: the dead code becomes the source in the encoder column, bias and decoder row', () => {
  const K = 3;
  const C = 4;
  const E = 2;
  const a = {
    encW: Float32Array.from({ length: C * K }, (_, i) => i + 1),
    encB: Float32Array.from([0.1, 0.2, 0.3]),
    decW: Float32Array.from({ length: K * E }, (_, i) => 10 * i),
  };
  const b = { encW: a.encW.slice(), encB: a.encB.slice(), decW: a.decW.slice() };
  restartCodes(a, [{ dead: 0, source: 2 }], { seed: 1, step: 5, jitter: 0.1 });
  assert.equal(a.encB[0], a.encB[2]);
  assert.deepEqual([...a.decW.subarray(0, E)], [...a.decW.subarray(2 * E, 3 * E)]);
  for (let c = 0; c < C; c++) {
    const src = a.encW[c * K + 2]!;
    assert.ok(
      a.encW[c * K]! !== src && Math.abs(a.encW[c * K]! - src) < 0.5 * Math.abs(src),
      'perturbed copy',
    );
    assert.equal(a.encW[c * K + 1], b.encW[c * K + 1], 'other codes untouched');
  }
  copyCodes(b, [{ dead: 0, source: 2 }]);
  for (let c = 0; c < C; c++) assert.equal(b.encW[c * K], b.encW[c * K + 2], 'exact copy');
  const again = { encW: b.encW.slice(), encB: b.encB.slice(), decW: b.decW.slice() };
  restartCodes(again, [{ dead: 1, source: 2 }], { seed: 1, step: 5, jitter: 0.1 });
  const twice = { encW: b.encW.slice(), encB: b.encB.slice(), decW: b.decW.slice() };
  restartCodes(twice, [{ dead: 1, source: 2 }], { seed: 1, step: 5, jitter: 0.1 });
  assert.deepEqual(again, twice, 'deterministic in (seed, step)');
});
