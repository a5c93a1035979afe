// Ranks as separate processes on a real nats-server: the same bits as in one process, on every rank,
// on every rerun.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PowerSgd } from '../collective/index.ts';
import { NATS_URL, openRanks, rankOrderSum, spawnRank, uniqueId } from './collective-helpers.ts';
import { psgdGrads, psgdSpecs, WORK_SIZES, workInput } from './collective-work.ts';

interface WorkResult {
  rank: number;
  sums?: string[];
  steps?: string[];
  error?: string;
  message?: string;
}

const hash = (xs: Float32Array[]) => {
  const h = createHash('sha256');
  for (const x of xs) h.update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  return h.digest('hex');
};

/** The same workload with W ranks in this process. */
async function inProcess(W: number): Promise<{ sums: string[]; steps: string[] }> {
  const sums = WORK_SIZES.map((n, k) =>
    hash([rankOrderSum(Array.from({ length: W }, (_, r) => workInput(n, k, r)))]),
  );
  const ranks = await openRanks(W);
  try {
    const ps = ranks.groups.map(
      (_, r) =>
        new PowerSgd(
          psgdSpecs,
          { rank: 2, startIter: 1, minCompressionRate: 1, wire: 'fp16' },
          { rank: r, worldSize: W, seed: 11 },
        ),
    );
    const steps: string[] = [];
    for (let s = 0; s < 3; s++) {
      const res = await Promise.all(ps.map((p, r) => p.reduce(ranks.groups[r]!, psgdGrads(s, r), s)));
      for (const x of res) assert.equal(hash(x.grads), hash(res[0]!.grads), 'in-process ranks agree');
      steps.push(hash(res[0]!.grads));
    }
    return { sums, steps };
  } finally {
    await ranks.close();
  }
}

async function separate(W: number): Promise<WorkResult[]> {
  const [runId, groupId] = [uniqueId('proc'), uniqueId('g')];
  const procs = Array.from({ length: W }, (_, rank) =>
    spawnRank<WorkResult>({
      url: NATS_URL,
      runId,
      groupId,
      rank,
      worldSize: W,
      timeoutMs: 30_000,
      mode: 'work',
    }),
  );
  const exits = await Promise.all(procs.map((p) => p.exit));
  return exits.map((e, r) => {
    assert.ok(e.last, `rank ${r} printed nothing (exit ${e.code ?? e.signal})`);
    return e.last;
  });
}

test('processes: W = 2, 3, 4 separate processes get the same bits as one process, on every rank and every rerun', async () => {
  for (const W of [2, 3, 4]) {
    const ref = await inProcess(W);
    const runs = W === 3 ? [await separate(W), await separate(W)] : [await separate(W)];
    for (const res of runs) {
      for (const r of res) {
        assert.equal(r.error, undefined, `W=${W} rank ${r.rank}: ${r.error}: ${r.message}`);
        assert.deepEqual(r.sums, ref.sums, `W=${W} rank ${r.rank}: all-reduce bits`);
        assert.deepEqual(r.steps, ref.steps, `W=${W} rank ${r.rank}: PowerSGD bits`);
      }
    }
  }
});
