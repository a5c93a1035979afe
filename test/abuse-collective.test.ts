// abuse: a stranger on the bus attacks a group's all-reduce: forged, replayed, stale and flooding chunks.
// Every forgery without the claimed rank's sender token is rejected and counted and the sums stay exact;
// the last tests show what the unsecured default still allows to someone who can *read* the bus (the
// tokens travel in join announcements), which is what per-run NATS permissions take away.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, headers, type Msg, type NatsConnection } from 'nats';
import { joinGroup, type Group, type JoinOptions } from '../collective/index.ts';
import { SENDER_HEADER, type Rejection } from '../collective/message-check.ts';
import { bitsEqual, NATS_URL, rankOrderSum, uniqueId, values } from './collective-helpers.ts';

interface Setup {
  groups: Group[];
  ncs: NatsConnection[];
  attacker: NatsConnection;
  /** Every message of the group the attacker saw, in order (it subscribed before anyone joined). */
  seen: Msg[];
  rejected: Rejection[][];
  prefix: string;
  close(): Promise<void>;
}

async function setup(opts: Partial<JoinOptions> = {}): Promise<Setup> {
  const runId = uniqueId('abuse');
  const groupId = uniqueId('g');
  const prefix = `dalle.${runId}.${groupId}`;
  const attacker = await connect({ servers: NATS_URL });
  const seen: Msg[] = [];
  attacker.subscribe(`${prefix}.>`, { callback: (_e, m) => seen.push(m) });
  await attacker.flush();
  const ncs = await Promise.all([0, 1].map(() => connect({ servers: NATS_URL })));
  const rejected: Rejection[][] = [[], []];
  const groups = await Promise.all(
    ncs.map((nc, rank) =>
      joinGroup({
        timeoutMs: 10_000,
        ...opts,
        nc,
        runId,
        groupId,
        rank,
        worldSize: 2,
        onRejected: (r) => rejected[rank]!.push(r),
      }),
    ),
  );
  return {
    groups,
    ncs,
    attacker,
    seen,
    rejected,
    prefix,
    close: async () => {
      await Promise.all(groups.map((g) => g.close().catch(() => undefined)));
      await Promise.all([...ncs, attacker].map((nc) => nc.close()));
    },
  };
}

/** A reduce-scatter chunk as a peer would publish it, claiming `from`, with `token` (or none). */
function forgeRs(
  s: Setup,
  o: { opIndex: number; step: number; from: number; to: number; length: number; token?: string },
  payload: Float32Array,
  chunk = 0,
): void {
  const h = headers();
  h.set('dalle-meta', `${o.opIndex} ${o.from} rs ${o.to} ${chunk} ${o.length} fp32 0 ${o.step} ar all`);
  if (o.token) h.set(SENDER_HEADER, o.token);
  s.attacker.publish(`${s.prefix}.rs.${o.step}.${o.to}`, new Uint8Array(payload.buffer), { headers: h });
}

/** The sender token rank `r` announced when it joined (readable by anyone on an unsecured bus). */
async function sniffedToken(s: Setup, r: number): Promise<string> {
  const find = () => s.seen.find((m) => m.subject === `${s.prefix}.join.0.${r}`);
  for (let i = 0; i < 100 && !find(); i++) await new Promise((res) => setTimeout(res, 20));
  const hello = find();
  assert.ok(hello, `the attacker saw rank ${r}'s join`);
  return (JSON.parse(new TextDecoder().decode(hello.data)) as { instance: string }).instance;
}

const N = 64;

test('abuse: forged chunks "from rank 0" (future step, wrong token, wrong op) are rejected; every sum stays exact', async () => {
  const s = await setup();
  try {
    const poison = new Float32Array(N / 2).fill(500_000);
    // The attack of the issue: a chunk for the next step, claiming rank 0, waiting to win over the real one.
    forgeRs(s, { opIndex: 1, step: 1, from: 0, to: 1, length: N }, poison);
    forgeRs(s, { opIndex: 1, step: 1, from: 0, to: 1, length: N, token: 'f'.repeat(16) }, poison);
    forgeRs(s, { opIndex: 7, step: 9, from: 0, to: 1, length: N, token: await sniffedToken(s, 0) }, poison);
    await s.attacker.flush();
    for (let step = 0; step < 3; step++) {
      const inputs = [values(N, step), values(N, 100 + step)];
      const out = await Promise.all(s.groups.map((g, r) => g.allReduce(inputs[r]!, step)));
      for (const o of out) assert.ok(bitsEqual(o, rankOrderSum(inputs)), `step ${step} exact`);
    }
    const reasons = s.rejected[1]!.map((r) => r.reason);
    assert.equal(s.groups[1]!.counters().rejected, 3, reasons.join('; '));
    assert.match(reasons[0]!, /not sent by the process that joined as rank 0/);
    assert.match(reasons[2]!, /operation #7 is not awaited/);
    assert.equal(s.groups[0]!.counters().rejected, 0);
  } finally {
    await s.close();
  }
});

test('abuse: replayed, duplicated and stale chunks (also out of order) change nothing', async () => {
  const s = await setup();
  try {
    const inputs = (step: number) => [values(N, step), values(N, 50 + step)];
    await Promise.all(s.groups.map((g, r) => g.allReduce(inputs(0)[r]!, 0)));
    const op0 = s.seen.filter((m) => /\.(rs|ag)\.0\.\d$/.test(m.subject));
    assert.ok(op0.length >= 2);
    for (let step = 1; step < 4; step++) {
      const pending = s.groups.map((g, r) => g.allReduce(inputs(step)[r]!, step));
      // Everything captured so far, replayed in reverse order while the new operation runs.
      for (const m of [...s.seen].reverse()) s.attacker.publish(m.subject, m.data, { headers: m.headers });
      const out = await Promise.all(pending);
      for (const o of out) assert.ok(bitsEqual(o, rankOrderSum(inputs(step))), `step ${step} exact`);
    }
  } finally {
    await s.close();
  }
});

test('abuse: a flood of early chunks is bounded: rejected without the token, CollectiveFloodError with a sniffed one', async () => {
  const s = await setup({ chunkBytes: 4096, windowBytes: 16384 });
  try {
    const chunk = new Float32Array(1024).fill(1);
    await Promise.all(s.groups.map((g, r) => g.allReduce(values(N, r), 0)));
    for (let c = 0; c < 2000; c++)
      forgeRs(s, { opIndex: 1, step: 1, from: 0, to: 1, length: 1 << 20 }, chunk, c);
    await s.attacker.flush();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(s.groups[1]!.counters().rejected, 2000, 'no token: every chunk rejected, none kept');
    const inputs = [values(N, 1), values(N, 2)];
    const out = await Promise.all(s.groups.map((g, r) => g.allReduce(inputs[r]!, 1)));
    assert.ok(bitsEqual(out[1]!, rankOrderSum(inputs)), 'the group still works');

    // On an unsecured bus the token can be read from the join: the flood is then kept, up to the bound.
    const token = await sniffedToken(s, 0);
    for (let c = 0; c < 200; c++)
      forgeRs(s, { opIndex: 2, step: 2, from: 0, to: 1, length: 1 << 20, token }, chunk, c);
    await s.attacker.flush();
    await new Promise((r) => setTimeout(r, 300));
    await assert.rejects(s.groups[1]!.allReduce(values(N, 3), 2), (e: Error) => {
      assert.equal(e.name, 'CollectiveFloodError', e.message);
      assert.match(e.message, /at most 40960 \/ 12/);
      return true;
    });
  } finally {
    await s.close();
  }
});

test('abuse: on the unsecured default, a sniffed token forges the running operation (per-run permissions stop this)', async () => {
  // Rank 0's first reduce-scatter chunk to rank 1 is lost; the attacker's copy, with rank 0's token read
  // from its join announcement, arrives before rank 1 asks for a resend, and is summed.
  const s = await setup({ dropChunk: (c) => c.opIndex === 0 && c.phase === 'rs' && c.to === 1 && !c.resend });
  try {
    const inputs = [values(N, 1), values(N, 2)];
    const pending = s.groups.map((g, r) => g.allReduce(inputs[r]!, 0));
    forgeRs(
      s,
      { opIndex: 0, step: 0, from: 0, to: 1, length: N, token: await sniffedToken(s, 0) },
      new Float32Array(N / 2).fill(500_000),
    );
    const out = await Promise.all(pending);
    assert.ok(!bitsEqual(out[1]!, rankOrderSum(inputs)), 'unsecured: the forgery was summed');
    assert.equal(out[1]![N / 2]! > 100_000, true, 'rank 1 owns the second half: poisoned');
  } finally {
    await s.close();
  }
});
