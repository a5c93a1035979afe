// The processes `dalle demo` starts (workers, sampler, console) as children of its own CLI, each logging to
// a file in the demo folder, so the demo can SIGKILL one worker mid-run and stop exactly what it started.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { packageFile } from '../../config/package-root.ts';

const CLI = packageFile('bin/dalle.js');

/** `dalle <args>` as a child process, its stdout and stderr appended to `logFile`. */
export function spawnLogged(args: string[], logFile: string): ChildProcess {
  const child = spawn(process.execPath, [CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: process.env,
  });
  const out = createWriteStream(logFile, { flags: 'a' });
  child.stdout!.pipe(out);
  child.stderr!.pipe(out);
  return child;
}

/** Sends `signal` and waits for the exit (SIGKILL after 30 s); resolves at once if it already exited. */
export function stop(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) return res();
    const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.once('exit', () => {
      clearTimeout(t);
      res();
    });
    child.kill(signal);
  });
}

/** Every child the demo started, with the workers by index (a restarted worker takes its index over). */
export class DemoProcesses {
  readonly children: ChildProcess[] = [];
  readonly workers: ChildProcess[] = [];
  /** Native threads per worker (`dalle demo --threads`). Default: every core of the host for each worker,
   *  not cores/W. The W ranks of a step take turns more than they overlap (each waits on the all-reduce
   *  while a peer computes), and on a shared machine a process's CPU share follows its runnable threads.
   *  Measured on this 2-core host at W = 2, `dalle demo --minutes 1 --no-kill --eval-n 1`, three runs in
   *  one session (2026-12-01, load 13-27 from other jobs), dVAE / transformer / reranker steps per minute:
   *  1 thread per worker 59.9 / 38.0 / 72.8, then 2 threads 153.6 / 113.0 / 189.4, then 1 thread again
   *  35.8 / 42.2 / 93.1. On a quiet machine it goes the other way (2026-12-02, load ~2, `--minutes 3 --no-kill
   *  --eval-n 1`, runs 1, 2, 1 threads): 294 / 259 / 555, then 287 / 218 / 373, then 343 / 242 / 511, so one
   *  thread per worker is 5–20 % faster there; kept at all cores because a different thread count also changes
   *  the float rounding, hence the run's trajectory, and the figures quoted for the demo are of this one. */
  private readonly threads: number;

  constructor(
    private readonly outDir: string,
    private readonly say: (line: string) => void,
    threads?: number,
  ) {
    this.threads = threads ?? cpus().length;
  }

  /** Adds a child started elsewhere (the console) so that stopAll stops it too. */
  adopt(child: ChildProcess): void {
    this.children.push(child);
  }

  startWorker(i: number): void {
    const log = join(this.outDir, `worker-${i}.log`);
    const w = spawnLogged(['worker', '--threads', String(this.threads)], log);
    this.children.push(w);
    this.workers[i] = w;
    this.say(`worker ${i} started (pid ${w.pid}, ${this.threads} native thread(s)), log ${log}`);
  }

  /** SIGKILLs worker i (no chance to clean up, like a lost machine) and starts a fresh one in its place. */
  async killAndReplaceWorker(i: number): Promise<void> {
    await stop(this.workers[i]!, 'SIGKILL');
    this.startWorker(i);
  }

  startSampler(address: string): void {
    const log = join(this.outDir, 'sampler.log');
    const sampler = spawnLogged(['sampler', '--address', address], log);
    this.children.push(sampler);
    this.say(`sampler started (pid ${sampler.pid}) on ${address}, log ${log}`);
  }

  stopAll(): Promise<void> {
    return Promise.all(this.children.map((c) => stop(c))).then(() => undefined);
  }
}
