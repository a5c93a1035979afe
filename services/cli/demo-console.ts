// The demo's web console: `dalle console` as a child process (so the demo's own model work never stalls
// it), its URL read from its first line, and a wait for Ctrl-C that keeps the console and the sampler up
// once the demo is done.
import type { ChildProcess } from 'node:child_process';
import { spawnLogged } from './demo-processes.ts';

/** Starts `dalle console`; resolves with its URL (token included), or with the reason it did not start. */
export function startConsoleChild(
  logFile: string,
): Promise<{ child: ChildProcess; url: string } | { error: string }> {
  const child = spawnLogged(['console'], logFile);
  let out = '';
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve({ error: `no URL within 60 s (see ${logFile})` }), 60_000);
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const m = /dalle console: (\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]! });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ error: `dalle console exited (${code}); see ${logFile}` });
    });
  });
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilInterrupted(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}
