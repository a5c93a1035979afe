// Core NATS drops what it cannot deliver: a rank whose event loop stalls is cut off by the server as a
// slow consumer, loses every chunk in flight to it, reconnects, and the all-reduce still completes with
// the exact sum (lost chunks re-requested, never summed as zero). Own nats-server with small limits. Both
// chunk paths: nats.js (the connection reconnects) and the data plane (cut off, the group moves its
// chunks to nats.js).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { joinGroup, type GroupCounters } from '../collective/index.ts';
import { rankOrderSum, spawnRank, uniqueId } from './collective-helpers.ts';
import { workInput } from './collective-work.ts';

function natsBin(): string {
  return (
    process.env.DALLE_NATS_BIN ??
    (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server')
  );
}

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function stallAndRecover(dataPlane: boolean): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'collective-slow-'));
  const port = await freePort();
  // max_pending 1 MiB (default 64 MiB) and a 2 s write deadline: a 3 s stall is a slow consumer for sure
  writeFileSync(
    join(dir, 'nats.conf'),
    `listen: 127.0.0.1:${port}\nmax_pending: 1048576\nmax_payload: 262144\nwrite_deadline: "2s"\n`,
  );
  const server = spawn(natsBin(), ['-c', join(dir, 'nats.conf'), '-l', join(dir, 'log')], {
    stdio: 'ignore',
  });
  const url = `nats://127.0.0.1:${port}`;
  let nc: NatsConnection | undefined;
  try {
    for (let i = 0; i < 50 && !nc; i++) {
      nc = await connect({ servers: url, reconnect: false }).catch(() => undefined);
      if (!nc) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(nc, 'nats-server started');
    const [runId, groupId] = [uniqueId('slow'), uniqueId('g')];
    // 32 MiB per rank: what the server must hold for the stalled rank (its half on both of that rank's
    // connections) is far beyond the kernel's socket buffers plus max_pending, on any machine
    const n = 8 << 20;
    const stalled = spawnRank<{
      sum?: string;
      events?: string[];
      counters?: GroupCounters;
      error?: string;
      message?: string;
    }>({
      url,
      runId,
      groupId,
      rank: 1,
      worldSize: 2,
      timeoutMs: 30_000,
      mode: 'stall',
      stallMs: 3000,
      size: n,
      dataPlane,
    });
    const g = await joinGroup({
      nc,
      runId,
      groupId,
      rank: 0,
      worldSize: 2,
      timeoutMs: 30_000,
      joinTimeoutMs: 60_000,
      dataPlane,
    });
    const out = await g.allReduce(workInput(n, 0, 0), { step: 1 });
    const mine = g.counters();
    await g.close();
    const child = (await stalled.exit).last!;
    assert.equal(child.error, undefined, `${child.error}: ${child.message}`);
    const expected = rankOrderSum([workInput(n, 0, 0), workInput(n, 0, 1)]);
    assert.ok(Buffer.from(out.buffer).equals(Buffer.from(expected.buffer)), 'rank 0: exact sum');
    assert.equal(
      child.sum,
      createHash('sha256').update(new Uint8Array(expected.buffer)).digest('hex'),
      'rank 1: exact sum',
    );
    const log = readFileSync(join(dir, 'log'), 'utf8');
    assert.match(log, /Slow Consumer Detected/, 'the server really cut rank 1 off');
    // (with the data plane, the connection cut off is the data plane's, and nats.js's may be too)
    if (!dataPlane)
      assert.ok(
        child.events!.includes('disconnect') && child.events!.includes('reconnect'),
        `rank 1 connection events: ${child.events}`,
      );
    // Rank 1 always notices the gap and asks. Whether rank 0 has anything to resend depends on which
    // connection the server cut: when it is only nats.js's, the chunks on the data plane were never lost
    // and arrive after the ask (seen under load: asked 1, resent 0, sums exact). The exact sums above are
    // the proof of recovery; resent chunks are required where chunks are certain to be lost.
    assert.ok(child.counters!.resendRequests > 0, `rank 1 never asked for a resend`);
    if (!dataPlane)
      assert.ok(
        mine.resent > 0,
        `recovered by resends: asked ${child.counters!.resendRequests}, resent ${mine.resent}`,
      );
    console.log(
      `slow consumer cut and recovered (data plane ${dataPlane}): rank 1 asked ${child.counters!.resendRequests} times, rank 0 resent ${mine.resent} chunks`,
    );
  } finally {
    await nc?.close();
    server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('slow-consumer: a rank cut off by the server mid-all-reduce reconnects and recovers every lost chunk', () =>
  stallAndRecover(false));

test('slow-consumer: a rank whose data plane is cut off moves its chunks to nats.js and recovers every lost chunk', () =>
  stallAndRecover(true));
