// `dalle bench allreduce [--json] [--sizes 1,16,64] [--worlds 2,4] [--iters 3] [--url nats://…]`
// (DALLE_BENCH_CPU_PROF=DIR profiles every rank and pub/sub process: `node --cpu-prof` files in DIR.)
//
// Bus bandwidth of the collective's all-reduce (S/t · 2(W−1)/W, the NCCL convention: what each rank's link
// carries) for S = 1, 16, 64 MB at W = 2 and 4, one process per rank, next to the raw NATS pub/sub
// throughput between two processes measured in the same run with the same message size (the ratio is
// the figure to watch: the protocol's cost over the transport). Starts its own nats-server unless --url.
// The all-reduce runs in place, as PowerSGD calls it (the result overwrites the input buffer).
//
// Raw pub/sub is also measured both ways at once (two processes, each publishing to the other while
// receiving from it): per direction, that is what an all-reduce at W = 2 asks of the transport, since each
// rank sends and receives its bus bytes at the same time through the one server (bus/2-way).
//
// It also accounts CPU seconds per 100 MB (each process's own, and the nats-server's from /proc when
// the bench started it): raw moves each byte publisher → server → subscriber; the all-reduce moves each
// bus byte in and out of every rank and twice through the server at W = 2 (more at W = 4). When the
// cores are the limit, bus/raw cannot exceed raw's CPU per byte over the all-reduce's.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { connect, type NatsConnection } from 'nats';
import { joinGroup } from '../collective/index.ts';
import { startServer } from './lib/nats-server.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { loaderFlags } from '../config/package-root.ts';

const MB = 1 << 20;
const self = fileURLToPath(import.meta.url);

interface RankJob {
  kind: 'rank';
  url: string;
  runId: string;
  rank: number;
  worldSize: number;
  sizesMB: number[];
  iters: number;
  /** Chunks on the collective's data plane (true) or on nats.js (JoinOptions.dataPlane). */
  dataPlane: boolean;
}
interface PubSubJob {
  kind: 'pub' | 'sub' | 'both';
  url: string;
  /** Where this process publishes ('pub', 'both') or listens ('sub'). */
  subject: string;
  msgBytes: number;
  count: number;
  /** 'both': where it listens, and the subject whose message starts both sides at once. */
  inbox?: string;
  go?: string;
}

export const cli = command({
  name: 'bench allreduce',
  summary: "bus bandwidth of the collective's all-reduce vs raw NATS pub/sub, one process per rank",
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    sizes: { type: 'string', value: 'MB,…', help: 'all-reduced sizes in MB (default 1,16,64)' },
    worlds: { type: 'string', value: 'W,…', help: 'world sizes (default 2,4)' },
    'nats-too': {
      type: 'boolean',
      help: 'also time each W with the chunks on nats.js instead of the data plane (before/after, one run)',
    },
    iters: { type: 'string', value: 'N', help: 'timed all-reduces per size (default 3)' },
    url: { type: 'string', value: 'nats://…', help: 'an existing nats-server (default: start one)' },
  },
});

/** CPU seconds a process has used so far (Linux /proc; undefined elsewhere or when it is gone). */
function processCpuSeconds(pid: number | undefined): number | undefined {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 1/100 s
  } catch {
    return undefined;
  }
}

function runChild(job: RankJob | PubSubJob): {
  child: ChildProcess;
  lines: Promise<Record<string, unknown>[]>;
  first: Promise<Record<string, unknown>>;
} {
  // DALLE_BENCH_CPU_PROF=DIR: every child writes a V8 CPU profile there (NODE_OPTIONS refuses --cpu-prof)
  const prof = process.env.DALLE_BENCH_CPU_PROF;
  const flags = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`] : [];
  const child = spawn(
    process.execPath,
    [...flags, ...loaderFlags(self), self, '--child', JSON.stringify(job)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const out: Record<string, unknown>[] = [];
  let buf = '';
  let firstResolve!: (l: Record<string, unknown>) => void;
  const first = new Promise<Record<string, unknown>>((r) => (firstResolve = r));
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
      buf = buf.slice(i + 1);
      if (!out.length) firstResolve(l);
      out.push(l);
    }
  });
  const lines = new Promise<Record<string, unknown>[]>((resolve, reject) =>
    child.on('exit', (code) =>
      code === 0 ? resolve(out) : reject(new Error(`bench child ${job.kind} exited ${code}`)),
    ),
  );
  return { child, lines, first };
}

/** Raw NATS between two processes, `count` messages of `msgBytes` each way: one way (a publisher → a
 *  subscriber) or both ways at once (each publishing to the other while receiving the other's). MB/s per
 *  direction (the mean of the receivers'), and CPU seconds per 100 MB moved of both processes and (when
 *  known) the server together. */
async function rawPubSub(
  url: string,
  msgBytes: number,
  totalBytes: number,
  bothWays: boolean,
  serverPid?: number,
): Promise<{ MBps: number; cpuPer100MB?: number }> {
  const count = Math.ceil(totalBytes / msgBytes);
  const base = `bench.raw.${process.pid}.${Date.now()}`;
  const s0 = processCpuSeconds(serverPid);
  let sides: ReturnType<typeof runChild>[];
  if (bothWays) {
    const go = `${base}.go`;
    sides = [
      runChild({ kind: 'both', url, subject: `${base}.a`, inbox: `${base}.b`, go, msgBytes, count }),
      runChild({ kind: 'both', url, subject: `${base}.b`, inbox: `${base}.a`, go, msgBytes, count }),
    ];
    await Promise.all(sides.map((x) => x.first)); // both subscribed
    const nc = await connect({ servers: url });
    nc.publish(go);
    await nc.flush();
    await nc.close();
  } else {
    const sub = runChild({ kind: 'sub', url, subject: base, msgBytes, count });
    await sub.first; // subscribed
    sides = [sub, runChild({ kind: 'pub', url, subject: base, msgBytes, count })];
  }
  const outs = await Promise.all(sides.map((x) => x.lines));
  const s1 = processCpuSeconds(serverPid);
  const last = outs.map((o) => o[o.length - 1] as { ms?: number; bytes?: number; cpu: number });
  const received = last.filter((r) => r.ms !== undefined);
  const MBps = received.reduce((sum, r) => sum + r.bytes! / MB / (r.ms! / 1000), 0) / received.length;
  const cpu =
    s0 !== undefined && s1 !== undefined ? last.reduce((sum, r) => sum + r.cpu, 0) + (s1 - s0) : undefined;
  const moved = count * msgBytes * (bothWays ? 2 : 1);
  return { MBps, cpuPer100MB: cpu === undefined ? undefined : (cpu / moved) * 100 * MB };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

interface AllReduceRow {
  worldSize: number;
  chunksOn: 'data plane' | 'nats.js';
  sizeMB: number;
  ms: number;
  algMBps: number;
  busMBps: number;
  busToRaw: number;
  /** Bus bandwidth over raw pub/sub's per direction when both directions run at once. */
  busToBothWays: number;
  samplesMs: number[];
  /** CPU seconds per 100 MB of bus traffic, ranks and (when known) server; all sizes of this W. */
  cpuPer100MB?: number;
}

/** One world size on one chunk path: W rank processes, every size, `iters` timed iterations each. */
async function measureWorld(
  url: string,
  serverPid: number | undefined,
  W: number,
  dataPlane: boolean,
  sizesMB: number[],
  iters: number,
): Promise<AllReduceRow[]> {
  const runId = `bench-${process.pid}-${W}-${Date.now()}`;
  const ranks = Array.from({ length: W }, (_, rank) =>
    runChild({ kind: 'rank', url, runId, rank, worldSize: W, sizesMB, iters, dataPlane }),
  );
  // (the server's CPU over the ranks' whole lives: their joins are a few messages, not bytes)
  const s0 = processCpuSeconds(serverPid);
  const outs = await Promise.all(ranks.map((r) => r.lines));
  const s1 = processCpuSeconds(serverPid);
  // CPU of every rank and the server over this W's whole run (warm-up iterations included), per bus byte
  const rankCpu = outs.reduce((sum, o) => sum + (o.at(-1) as { cpu: number }).cpu, 0);
  const busBytes = sizesMB.reduce((sum, mb) => sum + ((iters + 1) * mb * MB * 2 * (W - 1)) / W, 0);
  const cpuPer100MB =
    s0 !== undefined && s1 !== undefined ? ((rankCpu + s1 - s0) / busBytes) * 100 * MB : undefined;
  return sizesMB.map((sizeMB) => {
    // an iteration ends when the slowest rank has its result
    const per = outs.map((o) => (o.find((l) => l.sizeMB === sizeMB) as { times: number[] }).times);
    const samples = per[0]!.map((_, i) => Math.max(...per.map((t) => t[i]!)));
    const ms = median(samples);
    const algMBps = sizeMB / (ms / 1000);
    const busMBps = (algMBps * 2 * (W - 1)) / W;
    const chunksOn = dataPlane ? 'data plane' : 'nats.js';
    return {
      worldSize: W,
      chunksOn,
      sizeMB,
      ms,
      algMBps,
      busMBps,
      busToRaw: 0,
      busToBothWays: 0,
      samplesMs: samples,
      cpuPer100MB,
    };
  });
}

interface AllReduceReport {
  bench: 'allreduce';
  machine: { cpus: number; loadavg1: number };
  chunkBytes: number;
  iters: number;
  raw: {
    what: string;
    msgBytes: number;
    MBps: number;
    beforeMBps: number;
    afterMBps: number;
    cpuPer100MB: number | undefined;
    /** Per direction, both directions at once (rawPubSub both ways), before and after averaged. */
    bothWaysMBps: number;
    bothWaysCpuPer100MB: number | undefined;
  };
  results: AllReduceRow[];
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  const sizesMB = read.ints('sizes', values.sizes, 1) ?? [1, 16, 64];
  const worlds = read.ints('worlds', values.worlds, 2) ?? [2, 4];
  const iters = read.int('iters', values.iters, 1) ?? 3;
  const given = values.url;
  const server = given ? { url: given, stop: () => undefined } : await startServer();
  try {
    const probe = await connect({ servers: server.url });
    const maxPayload = probe.info!.max_payload;
    await probe.close();
    const chunkBytes = Math.min(MB, maxPayload - 4096) - (Math.min(MB, maxPayload - 4096) % 4);
    // raw throughput before and after the all-reduces (this machine's load drifts): the ratio uses the mean
    const serverPid = 'pid' in server ? server.pid : undefined;
    const before = await rawPubSub(server.url, chunkBytes, 48 * MB, false, serverPid);
    const bothBefore = await rawPubSub(server.url, chunkBytes, 48 * MB, true, serverPid);
    const results: AllReduceRow[] = [];
    const paths = values['nats-too'] ? [true, false] : [true];
    for (const [W, dataPlane] of worlds.flatMap((w) => paths.map((p) => [w, p] as const)))
      results.push(...(await measureWorld(server.url, serverPid, W, dataPlane, sizesMB, iters)));
    const after = await rawPubSub(server.url, chunkBytes, 48 * MB, false, serverPid);
    const bothAfter = await rawPubSub(server.url, chunkBytes, 48 * MB, true, serverPid);
    const bothMBps = (bothBefore.MBps + bothAfter.MBps) / 2;
    const rawMBps = (before.MBps + after.MBps) / 2;
    const rawCpu =
      before.cpuPer100MB !== undefined && after.cpuPer100MB !== undefined
        ? (before.cpuPer100MB + after.cpuPer100MB) / 2
        : undefined;
    for (const r of results) {
      r.busToRaw = r.busMBps / rawMBps;
      r.busToBothWays = r.busMBps / bothMBps;
    }
    const report: AllReduceReport = {
      bench: 'allreduce',
      machine: { cpus: cpus().length, loadavg1: loadavg()[0]! },
      chunkBytes,
      iters,
      raw: {
        what: 'one publisher process → one subscriber process',
        msgBytes: chunkBytes,
        MBps: rawMBps,
        beforeMBps: before.MBps,
        afterMBps: after.MBps,
        cpuPer100MB: rawCpu,
        bothWaysMBps: bothMBps,
        bothWaysCpuPer100MB:
          bothBefore.cpuPer100MB !== undefined && bothAfter.cpuPer100MB !== undefined
            ? (bothBefore.cpuPer100MB + bothAfter.cpuPer100MB) / 2
            : undefined,
      },
      results,
    };
    if (values.json) console.log(JSON.stringify(report));
    else printReport(report, sizesMB);
  } finally {
    server.stop();
  }
}

function printReport(report: AllReduceReport, sizesMB: number[]): void {
  const { chunkBytes, iters, raw, results } = report;
  const rawCpu = raw.cpuPer100MB;
  console.log(
    `all-reduce over NATS (one process per rank), ${iters} timed iterations, median; chunk ${chunkBytes} B; load ${report.machine.loadavg1.toFixed(1)} on ${report.machine.cpus} cores`,
  );
  const cpuText = (c: number | undefined) => (c === undefined ? '–' : c.toFixed(2));
  console.log(
    `raw NATS pub/sub, 1 → 1 process, ${chunkBytes} B messages: ${raw.MBps.toFixed(0)} MB/s (before ${raw.beforeMBps.toFixed(0)}, after ${raw.afterMBps.toFixed(0)}); CPU s per 100 MB, publisher + subscriber + server: ${cpuText(rawCpu)}`,
  );
  console.log(
    `raw NATS both ways at once, 2 processes, per direction: ${raw.bothWaysMBps.toFixed(0)} MB/s; CPU s per 100 MB, both + server: ${cpuText(raw.bothWaysCpuPer100MB)}`,
  );
  console.log(
    '   W chunks on    size      time   alg bw   bus bw   bus/raw  bus/2-way   CPU s/100 MB (ranks + server)',
  );
  for (const r of results) {
    console.log(
      `${String(r.worldSize).padStart(4)} ${r.chunksOn.padEnd(10)} ${String(r.sizeMB).padStart(4)} MB ${r.ms.toFixed(1).padStart(8)} ms ${r.algMBps.toFixed(0).padStart(5)} MB/s ${r.busMBps.toFixed(0).padStart(5)} MB/s ${(r.busToRaw * 100).toFixed(0).padStart(6)} %  ${(r.busToBothWays * 100).toFixed(0).padStart(7)} %   ${cpuText(r.cpuPer100MB)}`,
    );
  }
  for (const r of results.filter((x) => x.sizeMB === sizesMB[0])) {
    const c = r.cpuPer100MB;
    if (c !== undefined && rawCpu !== undefined)
      console.log(
        `W = ${r.worldSize}, chunks on ${r.chunksOn}: ${c.toFixed(2)} CPU s per 100 MB of bus traffic against raw's ${rawCpu.toFixed(2)}: with the cores saturated, bus/raw ≤ ${((100 * rawCpu) / c).toFixed(0)} %`,
      );
  }
}

/** Counts `count` messages on `subject`: first → last arrival (which covers count − 1 of them). */
function receiver(nc: NatsConnection, subject: string, count: number) {
  let n = 0;
  let bytes = 0;
  let t0 = 0;
  return new Promise<{ ms: number; bytes: number }>((resolve) =>
    nc.subscribe(subject, {
      callback: (_e, m) => {
        if (n === 0) t0 = performance.now();
        n++;
        bytes += m.data.length;
        if (n === count) resolve({ ms: performance.now() - t0, bytes: (bytes * (count - 1)) / count });
      },
    }),
  );
}

async function publishAll(nc: NatsConnection, job: PubSubJob): Promise<void> {
  const payload = new Uint8Array(job.msgBytes).fill(7);
  for (let i = 0; i < job.count; i++) {
    nc.publish(job.subject, payload);
    if (i % 8 === 7) await nc.flush(); // keep the client's outbound buffer bounded, as the all-reduce's window does
  }
  await nc.flush();
}

async function child(job: RankJob | PubSubJob): Promise<void> {
  const c0 = process.cpuUsage();
  const cpuSeconds = () => {
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / 1e6;
  };
  const nc = await connect({ servers: job.url });
  if (job.kind === 'sub' || job.kind === 'both') {
    // 'both' publishes to `subject` while receiving on `inbox`, from the moment `go` arrives
    const received = receiver(nc, job.kind === 'sub' ? job.subject : job.inbox!, job.count);
    const go =
      job.kind === 'both' &&
      new Promise<void>((resolve) => nc.subscribe(job.go!, { max: 1, callback: () => resolve() }));
    await nc.flush();
    console.log(JSON.stringify({ ready: true }));
    if (go) {
      await go;
      await publishAll(nc, job);
    }
    console.log(JSON.stringify({ ...(await received), cpu: cpuSeconds() }));
  } else if (job.kind === 'pub') {
    await publishAll(nc, job);
    console.log(JSON.stringify({ cpu: cpuSeconds() }));
  } else if (job.kind === 'rank') {
    const g = await joinGroup({
      nc,
      runId: job.runId,
      groupId: 'bench',
      rank: job.rank,
      worldSize: job.worldSize,
      timeoutMs: 60_000,
      dataPlane: job.dataPlane,
    });
    let loopCpu = 0;
    for (const sizeMB of job.sizesMB) {
      const data = new Float32Array((sizeMB * MB) / 4);
      for (let i = 0; i < data.length; i++) data[i] = ((i * 2654435761) % 1000) / 1000 - 0.5;
      const times: number[] = [];
      const c0 = process.cpuUsage();
      for (let it = -1; it < job.iters; it++) {
        await g.barrier(it + 1);
        const t0 = performance.now();
        await g.allReduce(data, { step: it + 1, tag: `s${sizeMB}`, inPlace: true });
        if (it >= 0) times.push(performance.now() - t0); // iteration -1 warms up
      }
      const c = process.cpuUsage(c0);
      loopCpu += (c.user + c.system) / 1e6;
      console.log(JSON.stringify({ rank: job.rank, sizeMB, times, resent: g.counters().resent }));
    }
    console.log(JSON.stringify({ cpu: loopCpu })); // the all-reduces' (and barriers') CPU only
    await g.close();
  }
  await nc.close();
}

if (
  process.argv[1] &&
  import.meta.url === pathToFileURL(process.argv[1]).href &&
  process.argv[2] === '--child'
) {
  await child(JSON.parse(process.argv[3]!) as RankJob | PubSubJob);
}
