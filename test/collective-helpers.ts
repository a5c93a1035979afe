// Shared by the collective integration tests: W ranks in this process, each with its own NATS connection
// to the real server at $NATS_URL, joined into a fresh group.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from 'nats';
import { joinGroup, type Group, type JoinOptions } from '../collective/index.ts';

export const NATS_URL = process.env.NATS_URL ?? 'nats://127.0.0.1:4222';

export function uniqueId(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

export interface Ranks {
  groups: Group[];
  ncs: NatsConnection[];
  runId: string;
  groupId: string;
  close(): Promise<void>;
}

/** Joins W ranks (one connection each) into a fresh group; `close` leaves and disconnects. */
export async function openRanks(
  W: number,
  opts: Partial<Omit<JoinOptions, 'nc' | 'rank' | 'worldSize'>> = {},
): Promise<Ranks> {
  const ncs = await Promise.all(Array.from({ length: W }, () => connect({ servers: NATS_URL })));
  const runId = opts.runId ?? uniqueId('run');
  const groupId = opts.groupId ?? uniqueId('g');
  const groups = await Promise.all(
    ncs.map((nc, rank) => joinGroup({ timeoutMs: 10_000, ...opts, nc, runId, groupId, rank, worldSize: W })),
  );
  return {
    groups,
    ncs,
    runId,
    groupId,
    async close() {
      await Promise.all(groups.map((g) => g.close()));
      await Promise.all(ncs.map((nc) => nc.close()));
    },
  };
}

/** Deterministic pseudo-random values in [-1, 1) (no Math.random: reruns see the same data). */
export function values(n: number, seed: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  let s = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = ((s >>> 8) / 2 ** 24) * 2 - 1;
    out[i]! *= scale;
  }
  return out;
}

/** The all-reduce a correct implementation must return bit for bit: float32 sums in rank order. */
export function rankOrderSum(inputs: Float32Array[]): Float32Array {
  const acc = Float32Array.from(inputs[0]!);
  for (let r = 1; r < inputs.length; r++) {
    const x = inputs[r]!;
    for (let i = 0; i < acc.length; i++) acc[i]! += x[i]!;
  }
  return acc;
}

export function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

export interface RankProcess<T> {
  child: ChildProcess;
  /** Every JSON line the child printed so far. */
  lines: T[];
  /** Resolves with the first line matching `pred` (or rejects when the child exits first). */
  line(pred: (l: T) => boolean): Promise<T>;
  /** Resolves with the last line once the child exits. */
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; last?: T }>;
}

/** Runs test/collective-rank-child.ts as its own process (argument: JSON). */
export function spawnRank<T = Record<string, unknown>>(args: object): RankProcess<T> {
  const script = fileURLToPath(new URL('./collective-rank-child.ts', import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', script, JSON.stringify(args)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: T[] = [];
  const waiters: { pred: (l: T) => boolean; resolve: (l: T) => void }[] = [];
  let buf = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const text = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (!text.startsWith('{')) continue;
      const l = JSON.parse(text) as T;
      lines.push(l);
      for (const w of waiters.splice(0)) {
        if (w.pred(l)) w.resolve(l);
        else waiters.push(w);
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; last?: T }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, last: lines[lines.length - 1] })),
  );
  return {
    child,
    lines,
    exit,
    line(pred) {
      const hit = lines.find(pred);
      if (hit) return Promise.resolve(hit);
      return new Promise<T>((resolve, reject) => {
        waiters.push({ pred, resolve });
        void exit.then((e) =>
          reject(
            new Error(
              `rank process exited (${e.code ?? e.signal}) before the expected line; stderr: ${stderr.slice(-2000)}`,
            ),
          ),
        );
      });
    },
  };
}
