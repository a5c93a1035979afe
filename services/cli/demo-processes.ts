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

/** Native threads for each of `workers` workers on this host: its cores shared among them (at least one).
 *  TensorFlow's kernels on the demo's small tensors gain little from a second thread and pay for its
 *  hand-offs: one shapes transformer step ran 5.0 steps/s with 1 thread and 3.1 with 2 (`dalle bench compare
 *  --configs shapes`, 2026-12-03 16:07, load 1.1), and a second thread per worker when two share two cores
 *  oversubscribes them. Measured on this 2-core host at W = 2, quiet (2026-12-02, `dalle demo --minutes 3
 *  --no-kill --eval-n 1`, runs with 1, 2, 1 threads), dVAE / transformer / reranker steps per minute: 294 /
 *  259 / 555, then 287 / 218 / 373, then 343 / 242 / 511. (Under other jobs' load on 2026-12-01 it went the
 *  other way, 2 threads 2.5× faster: a process's share of an oversubscribed machine follows its runnable
 *  threads; `--threads` is there for that case.) */
export function workerThreads(workers: number, cores = cpus().length): number {
  return Math.max(1, Math.floor(cores / Math.max(1, workers)));
}

/** Every child the demo started, with the workers by index (a restarted worker takes its index over). */
export class DemoProcesses {
  readonly children: ChildProcess[] = [];
  readonly workers: ChildProcess[] = [];
  constructor(
    private readonly outDir: string,
    private readonly say: (line: string) => void,
    /** Native threads per worker (`dalle demo --threads`, default `workerThreads`). */
    private readonly threads: number,
  ) {}

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
