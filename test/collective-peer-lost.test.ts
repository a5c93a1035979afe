// A rank that does not arrive, dies, hangs or leaves: every surviving rank raises PeerLostError naming
// it, within the timeout; nothing hangs. Real nats-server, real child processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from 'nats';
import {
  DuplicateRankError,
  GroupClosedError,
  joinGroup,
  PeerLostError,
  type Group,
} from '../collective/index.ts';
import { NATS_URL, openRanks, spawnRank, uniqueId } from './collective-helpers.ts';
import { workInput } from './collective-work.ts';

async function conns(n: number): Promise<NatsConnection[]> {
  return Promise.all(Array.from({ length: n }, () => connect({ servers: NATS_URL })));
}

function lost(r: PromiseSettledResult<unknown>): PeerLostError {
  assert.equal(r.status, 'rejected', 'expected the operation to fail');
  const e = (r as PromiseRejectedResult).reason as Error;
  assert.ok(e instanceof PeerLostError, `expected PeerLostError, got ${e?.name}: ${e?.message}`);
  return e;
}

test('peer-lost: a rank that never arrives makes the others raise PeerLostError naming it, within the timeout', async () => {
  const ncs = await conns(2);
  const [runId, groupId] = [uniqueId('run'), uniqueId('g')];
  try {
    const t0 = performance.now();
    const res = await Promise.allSettled(
      ncs.map((nc, rank) => joinGroup({ nc, runId, groupId, rank, worldSize: 3, timeoutMs: 1500 })),
    );
    const ms = performance.now() - t0;
    for (const r of res) {
      const e = lost(r);
      assert.deepEqual([e.ranks, e.step, e.op], [[2], null, 'join']);
    }
    assert.ok(ms >= 1400 && ms < 1500 + 1000, `${ms} ms`);
  } finally {
    await Promise.all(ncs.map((nc) => nc.close()));
  }
});

test('peer-lost: a rank killed with SIGKILL mid-all-reduce makes every other rank raise PeerLostError within the timeout', async () => {
  const W = 3;
  const timeoutMs = 12_000;
  const [runId, groupId] = [uniqueId('kill'), uniqueId('g')];
  const victim = spawnRank<{ joined?: boolean; survived?: boolean }>({
    url: NATS_URL,
    runId,
    groupId,
    rank: 2,
    worldSize: W,
    timeoutMs: 30_000,
    mode: 'victim',
  });
  const ncs = await conns(2);
  const spy = await connect({ servers: NATS_URL });
  let killedAt = 0;
  // kill it as soon as its first reduce-scatter chunk reaches rank 0
  spy.subscribe(`dalle.${runId}.${groupId}.rs.*.0`, {
    callback: (_e, m) => {
      if (!killedAt && m.headers?.get('dalle-meta').split(' ')[1] === '2') {
        killedAt = performance.now();
        if (process.env.DBG) console.error(`[${Math.round(killedAt)}] kill`);
        victim.child.kill('SIGKILL');
      }
    },
  });
  await spy.flush();
  let groups: Group[] = [];
  const inputs = [0, 1].map((r) => workInput(8 << 20, 0, r));
  try {
    groups = await Promise.all(
      ncs.map((nc, rank) =>
        joinGroup({ nc, runId, groupId, rank, worldSize: W, timeoutMs, retryMs: 250, joinTimeoutMs: 60_000 }),
      ),
    );
    // The survivors start only once the victim has been killed after sending its first chunk: it is then
    // mid-operation for certain (it waits for their chunks). Were they to start at once, the ranks can
    // finish an 8 MB all-reduce over the data plane before this nats.js spy has read the first chunk.
    const deadline = performance.now() + 60_000;
    while (!killedAt && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(killedAt > 0, 'the victim was killed');
    const res = await Promise.allSettled(groups.map((g, r) => g.allReduce(inputs[r]!, { step: 7 })));
    const failedAt = performance.now();
    const reasons: string[] = [];
    for (const r of res) {
      const e = lost(r);
      assert.deepEqual([e.ranks, e.step, e.op], [[2], 7, 'allReduce:ar']);
      reasons.push(e.message);
    }
    console.log(
      `PeerLostError ${Math.round(failedAt - killedAt)} ms after SIGKILL (timeout ${timeoutMs} ms)`,
    );
    assert.ok(
      failedAt - killedAt < timeoutMs,
      `raised ${Math.round(failedAt - killedAt)} ms after the kill (timeout ${timeoutMs}): ${reasons.join('; ')}`,
    );
    const exit = await victim.exit;
    assert.equal(exit.signal, 'SIGKILL');
    assert.ok(!victim.lines.some((l) => l.survived), 'the victim never finished its all-reduce');
    // the group stays failed: no operation hangs afterwards
    await assert.rejects(groups[0]!.allReduce(new Float32Array(3), { step: 8 }), PeerLostError);
  } finally {
    victim.child.kill('SIGKILL');
    await Promise.all(groups.map((g) => g.close()));
    await spy.close();
    await Promise.all(ncs.map((nc) => nc.close()));
  }
});

test('peer-lost: a rank that stops answering (event loop blocked) is named after timeoutMs without progress', async () => {
  const W = 3;
  const timeoutMs = 2000;
  const [runId, groupId] = [uniqueId('hang'), uniqueId('g')];
  const hung = spawnRank<{ joined?: boolean }>({
    url: NATS_URL,
    runId,
    groupId,
    rank: 2,
    worldSize: W,
    timeoutMs,
    mode: 'hang',
  });
  const ncs = await conns(2);
  let groups: Group[] = [];
  try {
    groups = await Promise.all(
      ncs.map((nc, rank) =>
        joinGroup({ nc, runId, groupId, rank, worldSize: W, timeoutMs, joinTimeoutMs: 60_000 }),
      ),
    );
    await hung.line((l) => !!l.joined);
    const t0 = performance.now();
    const res = await Promise.allSettled(
      groups.map((g, r) => g.allReduce(workInput(1000, 0, r), { step: 3 })),
    );
    const ms = performance.now() - t0;
    for (const r of res) assert.deepEqual(lost(r).ranks, [2]);
    assert.ok(ms >= timeoutMs * 0.9 && ms < timeoutMs + 1500, `${Math.round(ms)} ms`);
  } finally {
    hung.child.kill('SIGKILL');
    await Promise.all(groups.map((g) => g.close()));
    await Promise.all(ncs.map((nc) => nc.close()));
  }
});

test('peer-lost: a rank that leaves the group fails the others at once; two processes claiming one rank are refused', async () => {
  const ranks = await openRanks(3, { timeoutMs: 3000 });
  try {
    const leaving = ranks.groups[2]!.close();
    const t0 = performance.now();
    const res = await Promise.allSettled(
      [0, 1].map((r) => ranks.groups[r]!.allReduce(new Float32Array(10), { step: 1 })),
    );
    for (const r of res) assert.deepEqual(lost(r).ranks, [2]);
    assert.ok(performance.now() - t0 < 1500);
    await leaving;
  } finally {
    await ranks.close();
  }
  // closing in the middle of an operation (a cancelled rank): its own wait ends at once, the others' too
  const more = await openRanks(3, { timeoutMs: 10_000 });
  try {
    const pending = more.groups[2]!.allReduce(new Float32Array(10), { step: 4 });
    await new Promise((r) => setTimeout(r, 200)); // waiting for ranks 0 and 1, which have not called yet
    const t0 = performance.now();
    await more.groups[2]!.close();
    await assert.rejects(pending, GroupClosedError);
    const res = await Promise.allSettled(
      [0, 1].map((r) => more.groups[r]!.allReduce(new Float32Array(10), { step: 4 })),
    );
    for (const r of res) assert.deepEqual(lost(r).ranks, [2]);
    assert.ok(performance.now() - t0 < 2000, `${performance.now() - t0} ms`);
  } finally {
    await more.close();
  }
  const ncs = await conns(3);
  const [runId, groupId] = [uniqueId('dup'), uniqueId('g')];
  try {
    const res = await Promise.allSettled(
      [0, 1, 1].map((rank, i) =>
        joinGroup({ nc: ncs[i]!, runId, groupId, rank, worldSize: 3, timeoutMs: 3000 }),
      ),
    );
    for (const r of res) {
      assert.equal(r.status, 'rejected');
      assert.ok(
        (r as PromiseRejectedResult).reason instanceof DuplicateRankError,
        String((r as PromiseRejectedResult).reason),
      );
    }
    // A second instance that arrives after the first has announced itself is told too, not left to wait
    // out the join timeout: the first says hello once more as it fails.
    const [run2, group2] = [uniqueId('dup'), uniqueId('g')];
    const join2 = (i: number) =>
      joinGroup({ nc: ncs[i]!, runId: run2, groupId: group2, rank: 1, worldSize: 2, timeoutMs: 3000 });
    const first = join2(0);
    await new Promise((r) => setTimeout(r, 250));
    const t0 = performance.now();
    const late = await Promise.allSettled([first, join2(1)]);
    for (const r of late) {
      assert.equal(r.status, 'rejected');
      const why = (r as PromiseRejectedResult).reason;
      assert.ok(why instanceof DuplicateRankError, String(why));
    }
    assert.ok(performance.now() - t0 < 2000, `${performance.now() - t0} ms`);
  } finally {
    await Promise.all(ncs.map((nc) => nc.close()));
  }
});
