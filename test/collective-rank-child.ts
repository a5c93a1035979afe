// One rank as its own process, for the separate-process collective tests. argv[2] is JSON (RankArgs);
// the result is one JSON line on stdout.
//   mode 'work':   all-reduces of the standard sizes + a few PowerSGD steps; prints their sha256
//   mode 'victim': one big all-reduce (the parent kills this process with SIGKILL while it runs)
//   mode 'hang':   joins, then blocks its event loop (alive but not answering)
//   mode 'stall':  starts an all-reduce and blocks its event loop for stallMs once data arrives, so that
//                  the server cuts it off as a slow consumer; then reconnects and finishes
import { createHash } from 'node:crypto';
import { connect } from 'nats';
import { joinGroup, PeerLostError, PowerSgd } from '../collective/index.ts';
import { psgdSpecs, psgdGrads, WORK_SIZES, workInput } from './collective-work.ts';

export interface RankArgs {
  url: string;
  runId: string;
  groupId: string;
  rank: number;
  worldSize: number;
  timeoutMs: number;
  mode: 'work' | 'victim' | 'hang' | 'stall';
  stallMs?: number;
  size?: number;
  /** JoinOptions.dataPlane (default true). */
  dataPlane?: boolean;
}

const a = JSON.parse(process.argv[2]!) as RankArgs;
const nc = await connect({ servers: a.url, reconnectTimeWait: 100, maxReconnectAttempts: -1 });
const events: string[] = [];
void (async () => {
  for await (const s of nc.status()) events.push(s.type);
})();
const hash = (xs: Float32Array[]) => {
  const h = createHash('sha256');
  for (const x of xs) h.update(new Uint8Array(x.buffer, x.byteOffset, x.byteLength));
  return h.digest('hex');
};
try {
  const group = await joinGroup({
    nc,
    runId: a.runId,
    groupId: a.groupId,
    rank: a.rank,
    worldSize: a.worldSize,
    timeoutMs: a.timeoutMs,
    joinTimeoutMs: 60_000,
    dataPlane: a.dataPlane,
  });
  if (a.mode === 'work') {
    const sums: string[] = [];
    for (const [k, n] of WORK_SIZES.entries())
      sums.push(hash([await group.allReduce(workInput(n, k, a.rank), { step: k })]));
    const psgd = new PowerSgd(
      psgdSpecs,
      { rank: 2, startIter: 1, minCompressionRate: 1, wire: 'fp16' },
      { rank: a.rank, worldSize: a.worldSize, seed: 11 },
    );
    const steps: string[] = [];
    for (let s = 0; s < 3; s++) steps.push(hash((await psgd.reduce(group, psgdGrads(s, a.rank), s)).grads));
    await group.close();
    console.log(JSON.stringify({ rank: a.rank, sums, steps }));
  } else if (a.mode === 'victim') {
    console.log(JSON.stringify({ rank: a.rank, joined: true }));
    await group.allReduce(workInput(8 << 20, 0, a.rank), { step: 7 }); // 32 MB: long enough to be killed mid-way
    console.log(JSON.stringify({ rank: a.rank, survived: true }));
  } else if (a.mode === 'stall') {
    let stalled = false;
    // the group's own subject: block at once when the peer's reduce-scatter data starts to arrive (not on a
    // later tick: on a quiet machine the rest of the data arrives within that tick and nothing is cut off)
    nc.subscribe(`dalle.${a.runId}.${a.groupId}.rs.*.${a.rank}`, {
      callback: () => {
        if (stalled) return;
        stalled = true;
        const until = Date.now() + a.stallMs!;
        while (Date.now() < until);
      },
    });
    await nc.flush();
    const out = await group.allReduce(workInput(a.size!, 0, a.rank), { step: 1 });
    const counters = group.counters();
    await group.close();
    console.log(JSON.stringify({ rank: a.rank, sum: hash([out]), events, counters }));
  } else {
    console.log(JSON.stringify({ rank: a.rank, joined: true }));
    const until = Date.now() + 4 * a.timeoutMs;
    while (Date.now() < until); // busy: no message is read or answered
  }
} catch (e) {
  const err = e as Error;
  console.log(
    JSON.stringify({
      rank: a.rank,
      error: err.name,
      message: err.message,
      ranks: err instanceof PeerLostError ? err.ranks : undefined,
    }),
  );
} finally {
  await nc.close();
}
