// collective: the all-reduce's two halves on their own, over a real nats-server, with caller-given
// segments (one of them empty). A reduce-scatter leaves each rank exactly the rank-order sum of its
// segment and moves half an all-reduce's bytes; an all-gather gives every rank every rank's segment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CollectiveArgumentError } from '../collective/index.ts';
import { openRanks, rankOrderSum, values } from './collective-helpers.ts';

const W = 3;
const N = 50_000;
const SEGMENTS = [0, 20_000, 20_000, N]; // rank 1 owns nothing

test('collective: reduce-scatter and all-gather with given segments', async () => {
  const r = await openRanks(W, { chunkBytes: 16 * 1024 });
  try {
    const inputs = r.groups.map((_, k) => values(N, k + 1));
    const want = rankOrderSum(inputs);
    const bytesOut = () => r.groups.reduce((n, g) => n + g.counters().bytesOut, 0);

    let before = bytesOut();
    const all = await Promise.all(r.groups.map((g, k) => g.allReduce(inputs[k]!, { step: 1, tag: 'all' })));
    const allBytes = bytesOut() - before;
    for (const out of all) assert.deepEqual(out, want);

    before = bytesOut();
    const scattered = await Promise.all(
      r.groups.map((g, k) =>
        g.allReduce(Float32Array.from(inputs[k]!), {
          step: 1,
          tag: 'rs',
          mode: 'scatter',
          segments: SEGMENTS,
        }),
      ),
    );
    const scatterBytes = bytesOut() - before;
    scattered.forEach((out, k) =>
      assert.deepEqual(
        out.subarray(SEGMENTS[k], SEGMENTS[k + 1]),
        want.subarray(SEGMENTS[k], SEGMENTS[k + 1]),
        `rank ${k}: its segment's sum`,
      ),
    );
    // Each rank sends the other owners' segments; the acks carry no values.
    assert.equal(scatterBytes, 4 * (W - 1) * N);
    assert.equal(allBytes, 4 * W * N, 'an all-reduce also broadcasts every sum');

    const own = r.groups.map((_, k) => {
      const v = new Float32Array(N);
      v.set(want.subarray(SEGMENTS[k], SEGMENTS[k + 1]), SEGMENTS[k]);
      return v;
    });
    before = bytesOut();
    const gathered = await Promise.all(
      r.groups.map((g, k) =>
        g.allReduce(own[k]!, { step: 1, tag: 'ag', mode: 'gather', segments: SEGMENTS }),
      ),
    );
    assert.equal(bytesOut() - before, 4 * N, 'every segment published once');
    for (const out of gathered) assert.deepEqual(out, want);

    await assert.rejects(
      r.groups[0]!.allReduce(new Float32Array(N), { step: 2, segments: [0, N] }),
      CollectiveArgumentError,
    );
    await assert.rejects(
      r.groups[0]!.allReduce(new Float32Array(N), { step: 2, mode: 'gather', average: true }),
      CollectiveArgumentError,
    );
  } finally {
    await r.close();
  }
});
