// A private nats-server for a benchmark run, on a free loopback port, removed afterwards.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** A private nats-server for the run (default settings: max_payload 1 MiB, max_pending 64 MiB); `pid`
 *  for accounting its CPU. */
export async function startServer(): Promise<{ url: string; stop: () => void; pid?: number }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'bench-nats-'));
  const bin =
    process.env.DALLE_NATS_BIN ??
    (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : 'nats-server');
  const p = spawn(bin, ['-a', '127.0.0.1', '-p', String(port), '-l', join(dir, 'log')], { stdio: 'ignore' });
  const url = `nats://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    try {
      const nc = await connect({ servers: url, reconnect: false });
      await nc.close();
      const stop = () => {
        p.kill();
        rmSync(dir, { recursive: true, force: true });
      };
      return { url, stop, pid: p.pid };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  p.kill();
  throw new Error(`could not start ${bin} on port ${port}`);
}
