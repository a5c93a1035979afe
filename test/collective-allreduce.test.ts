// The all-reduce over a real nats-server, W ranks in this process (each with its own connection).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { context, propagation, ROOT_CONTEXT, trace, TraceFlags } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { connect, type Msg } from 'nats';
import {
  CollectiveArgumentError,
  CollectiveMismatchError,
  decodeFp16,
  encodeFp16,
  joinGroup,
  PeerLostError,
} from '../collective/index.ts';
import { layout } from '../collective/partition.ts';
import { bitsEqual, NATS_URL, openRanks, rankOrderSum, uniqueId, values } from './collective-helpers.ts';

const SIZES = [0, 1, 3, 1000, 65_537];

test('allreduce: W = 2, 3, 4 ranks get the rank-order float32 sum, bit-identical on every rank and every rerun, also in place', async () => {
  for (const W of [2, 3, 4]) {
    const runs: Float32Array[][] = [];
    for (let rerun = 0; rerun < 2; rerun++) {
      const ranks = await openRanks(W);
      try {
        const outs: Float32Array[] = [];
        for (const [k, n] of SIZES.entries()) {
          const inputs = ranks.groups.map((_, r) => values(n, 100 * k + r, 10 ** (r - 2)));
          const res = await Promise.all(
            ranks.groups.map((g, r) => g.allReduce(inputs[r]!, { step: k, tag: 'sum' })),
          );
          const expected = rankOrderSum(inputs);
          for (const [r, out] of res.entries())
            assert.ok(bitsEqual(out, expected), `W=${W} n=${n}: rank ${r} differs from the rank-order sum`);
          // inputs were not modified
          assert.ok(bitsEqual(inputs[0]!, values(n, 100 * k, 10 ** -2)));
          const mean = await Promise.all(
            ranks.groups.map((g, r) => g.allReduce(inputs[r]!, { step: k, tag: 'mean', average: true })),
          );
          for (const out of mean)
            assert.ok(
              bitsEqual(
                out,
                expected.map((v) => v / W),
              ),
              `W=${W} n=${n}: mean`,
            );
          // inPlace: the same bits, written into (and returned as) the caller's array
          const copies = inputs.map((x) => Float32Array.from(x));
          const inPlace = await Promise.all(
            ranks.groups.map((g, r) => g.allReduce(copies[r]!, { step: k, tag: 'inplace', inPlace: true })),
          );
          for (const [r, out] of inPlace.entries()) {
            assert.equal(out, copies[r], `W=${W} n=${n}: rank ${r} in place returned another array`);
            assert.ok(bitsEqual(out, expected), `W=${W} n=${n}: rank ${r} in place differs`);
          }
          outs.push(res[0]!);
        }
        runs.push(outs);
      } finally {
        await ranks.close();
      }
    }
    for (const i of SIZES.keys())
      assert.ok(bitsEqual(runs[0]![i]!, runs[1]![i]!), `W=${W}: rerun differs at size ${SIZES[i]}`);
  }
});

test('allreduce: 10 MB tensors are cut into chunks below max_payload and arrive intact (W = 2, 4)', async () => {
  const n = 2_621_440; // 10 MiB of float32
  for (const W of [2, 4]) {
    const ranks = await openRanks(W);
    const spy = await connect({ servers: NATS_URL });
    const maxPayload = spy.info!.max_payload;
    let biggest = 0;
    let chunks = 0;
    spy.subscribe(`dalle.${ranks.runId}.${ranks.groupId}.>`, {
      callback: (_e, m: Msg) => {
        if (!/\.(rs|ag)\./.test(m.subject)) return;
        chunks++;
        biggest = Math.max(biggest, m.data.length + (m.headers ? m.headers.toString().length : 0));
      },
    });
    await spy.flush();
    try {
      const inputs = ranks.groups.map((_, r) => values(n, 7 + r));
      const c0 = ranks.groups.map((g) => g.counters());
      const res = await Promise.all(ranks.groups.map((g, r) => g.allReduce(inputs[r]!, { step: 1 })));
      const expected = rankOrderSum(inputs);
      for (const out of res) assert.ok(bitsEqual(out, expected), `W=${W}: 10 MB result`);
      await spy.flush();
      const l = layout(
        n,
        W,
        Math.floor((Math.min(1 << 20, maxPayload - 4096) - (Math.min(1 << 20, maxPayload - 4096) % 4)) / 4),
      );
      const total = l.chunks.reduce((a, b) => a + b, 0);
      const published = ranks.groups.reduce((s, g, r) => s + g.counters().msgsOut - c0[r]!.msgsOut, 0);
      const resent = ranks.groups.reduce((s, g) => s + g.counters().resent, 0);
      // every rank sends each other owner's chunks once (rs) and broadcasts its own once (ag)
      assert.equal(published - resent, (W - 1) * total + total, `W=${W}: chunk count`);
      assert.ok(total >= 10, `W=${W}: ${total} chunks`);
      assert.ok(biggest < maxPayload, `W=${W}: largest message ${biggest} B vs max_payload ${maxPayload}`);
      assert.ok(chunks >= published - resent);
    } finally {
      await spy.close();
      await ranks.close();
    }
  }
});

test('allreduce: fp16 wire rounds like IEEE half, sums in fp32 at the owner, and stays bit-identical', async () => {
  const W = 3;
  const ranks = await openRanks(W);
  try {
    const n = 70_001;
    const inputs = ranks.groups.map((_, r) => values(n, 40 + r, 100));
    const half = (a: Float32Array) =>
      decodeFp16(encodeFp16(a, new Uint16Array(a.length)), new Float32Array(a.length));
    for (const average of [false, true]) {
      const res = await Promise.all(
        ranks.groups.map((g, r) => g.allReduce(inputs[r]!, { step: 0, wire: 'fp16', average })),
      );
      const sum = rankOrderSum(inputs.map(half));
      const expected = half(average ? sum.map((v) => v / W) : sum);
      for (const out of res) assert.ok(bitsEqual(out, expected), `fp16 average=${average}`);
    }
    const c = ranks.groups[0]!.counters();
    // two fp16 all-reduces: each rank publishes n values of 2 bytes per op (reduce-scatter + all-gather)
    if (c.resent === 0) assert.equal(c.bytesOut, 2 * n * 2);
  } finally {
    await ranks.close();
  }
});

test('allreduce: a lost chunk is detected and re-requested, never summed as zero', async () => {
  const W = 3;
  const dropped = new Set<string>();
  // rank 1 "loses" (never publishes) the first send of one reduce-scatter chunk to rank 0 and of one
  // all-gather broadcast; rank 2 loses one reduce-scatter chunk to rank 1. Only first sends: resends pass.
  const drop =
    (rank: number) => (c: { phase: string; to: number | 'all'; chunk: number; resend: boolean }) => {
      const key = `${rank}:${c.phase}:${c.to}:${c.chunk}`;
      const lose =
        !c.resend &&
        c.chunk === 1 &&
        ((rank === 1 && (c.to === 0 || c.to === 'all')) || (rank === 2 && c.to === 1)) &&
        !dropped.has(key);
      if (lose) dropped.add(key);
      return lose;
    };
  const ncs = await Promise.all([0, 1, 2].map(() => connect({ servers: NATS_URL })));
  const [runId, groupId] = [uniqueId('run'), uniqueId('g')];
  const groups = await Promise.all(
    ncs.map((nc, rank) =>
      joinGroup({
        nc,
        runId,
        groupId,
        rank,
        worldSize: W,
        timeoutMs: 5000,
        retryMs: 100,
        chunkBytes: 4096,
        dropChunk: drop(rank),
      }),
    ),
  );
  try {
    const inputs = groups.map((_, r) => values(20_000, 3 + r));
    const res = await Promise.all(groups.map((g, r) => g.allReduce(inputs[r]!, { step: 9 })));
    const expected = rankOrderSum(inputs);
    for (const out of res) assert.ok(bitsEqual(out, expected), 'recovered result is exact');
    assert.equal(dropped.size, 3);
    const c = groups.map((g) => g.counters());
    assert.equal(c[1]!.dropped + c[2]!.dropped, 3);
    assert.ok(c[0]!.resendRequests > 0 && c[1]!.resent >= 2 && c[2]!.resent >= 1, JSON.stringify(c));
  } finally {
    await Promise.all(groups.map((g) => g.close()));
    await Promise.all(ncs.map((nc) => nc.close()));
  }
  // a peer whose chunks keep getting lost (resends too) is reported, not summed as zero
  const ranks = await openRanks(2, {
    timeoutMs: 1500,
    retryMs: 100,
    dropChunk: (c) => c.to === 0 || c.to === 'all',
  });
  try {
    const t0 = performance.now();
    const res = await Promise.allSettled(
      ranks.groups.map((g, r) => g.allReduce(values(100, r), { step: 4 })),
    );
    const ms = performance.now() - t0;
    const r0 = res[0]!;
    assert.equal(r0.status, 'rejected');
    const e = (r0 as PromiseRejectedResult).reason as PeerLostError;
    assert.ok(e instanceof PeerLostError, String(e));
    assert.deepEqual([e.ranks, e.step], [[1], 4]);
    assert.ok(ms < 1500 + 1000, `${ms} ms`);
  } finally {
    await ranks.close();
  }
});

test("allreduce: the W3C traceparent of the caller travels in every chunk's headers", async () => {
  // what the telemetry SDK will install: a context manager and the W3C propagator
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  const ranks = await openRanks(2);
  const spy = await connect({ servers: NATS_URL });
  const seen: string[] = [];
  spy.subscribe(`dalle.${ranks.runId}.${ranks.groupId}.*.*.*`, {
    callback: (_e, m) => /\.(rs|ag)\./.test(m.subject) && seen.push(m.headers?.get('traceparent') ?? ''),
  });
  await spy.flush();
  try {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const parent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId,
      spanId: 'b7ad6b7169203331',
      traceFlags: TraceFlags.SAMPLED,
      isRemote: true,
    });
    await context.with(parent, () =>
      Promise.all(ranks.groups.map((g, r) => g.allReduce(values(300_000, r), { step: 2 }))),
    );
    await spy.flush();
    assert.ok(seen.length >= 4, `${seen.length} chunks`);
    // no SDK: the span is non-recording and propagates the caller's context unchanged
    for (const tp of seen) assert.equal(tp, `00-${traceId}-b7ad6b7169203331-01`);
  } finally {
    propagation.disable();
    context.disable();
    await spy.close();
    await ranks.close();
  }
});

test('allreduce: barrier(step) returns only once every rank has arrived', async () => {
  const ranks = await openRanks(3);
  try {
    const t0 = performance.now();
    const late = new Promise((r) => setTimeout(r, 300)).then(() => ranks.groups[2]!.barrier(5));
    const times = await Promise.all([
      ranks.groups[0]!.barrier(5).then(() => performance.now() - t0),
      ranks.groups[1]!.barrier(5).then(() => performance.now() - t0),
      late,
    ]);
    assert.ok(times[0]! >= 290 && times[1]! >= 290, `${times[0]} ${times[1]}`);
  } finally {
    await ranks.close();
  }
});

test('allreduce: mismatched calls fail with CollectiveMismatchError naming the field; bad arguments are rejected', async () => {
  const ranks = await openRanks(2, { timeoutMs: 3000 });
  try {
    const res = await Promise.allSettled([
      ranks.groups[0]!.allReduce(new Float32Array(10), { step: 1 }),
      ranks.groups[1]!.allReduce(new Float32Array(11), { step: 1 }),
    ]);
    for (const r of res) {
      assert.equal(r.status, 'rejected');
      const e = (r as PromiseRejectedResult).reason as CollectiveMismatchError;
      assert.ok(e instanceof CollectiveMismatchError, String(e));
      assert.equal(e.field, 'length');
    }
    // the group is unusable afterwards
    await assert.rejects(
      ranks.groups[0]!.allReduce(new Float32Array(1), { step: 2 }),
      CollectiveMismatchError,
    );
    await assert.rejects(
      ranks.groups[0]!.allReduce([1, 2] as unknown as Float32Array, { step: 2 }),
      (e: Error) => e instanceof CollectiveArgumentError && /data must be a Float32Array/.test(e.message),
    );
    await assert.rejects(
      ranks.groups[0]!.allReduce(new Float32Array(1), { step: 2, tag: 'a.b' }),
      /tag must be/,
    );
    await assert.rejects(
      ranks.groups[0]!.allReduce(new Float32Array(1), { step: -1 }),
      /step must be an integer/,
    );
  } finally {
    await ranks.close();
  }
  const nc = await connect({ servers: NATS_URL });
  try {
    const base = { nc, runId: 'r', groupId: 'g', rank: 0, worldSize: 2, timeoutMs: 1000 };
    await assert.rejects(joinGroup({ ...base, rank: 2 }), /rank must be an integer in \[0, 2\)/);
    await assert.rejects(joinGroup({ ...base, worldSize: 0 }), /worldSize must be an integer/);
    await assert.rejects(joinGroup({ ...base, runId: 'a b' }), /runId must be/);
    await assert.rejects(joinGroup({ ...base, groupId: 'x.>' }), /groupId must be/);
    await assert.rejects(joinGroup({ ...base, timeoutMs: 0 }), /timeoutMs must be/);
    await assert.rejects(
      joinGroup({ ...base, chunkBytes: 2 ** 21 }),
      /chunkBytes must be an integer in \[8, /,
    );
    // worldSize 1: a copy, no network
    const solo = await joinGroup({ ...base, worldSize: 1, groupId: uniqueId('solo') });
    const x = values(10, 1);
    const y = await solo.allReduce(x, { step: 0 });
    assert.ok(bitsEqual(x, y) && x !== y);
    assert.equal(solo.counters().msgsOut, 0);
    await solo.close();
  } finally {
    await nc.close();
  }
});
