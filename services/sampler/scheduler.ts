// Batching scheduler: a bounded FIFO of requests, a concurrency limit, and one loop that runs token steps.
//
// Requests admitted together (same model) become the rows of one SamplingSession, so a single batched
// forward pass advances all of them by one token: that is where concurrent requests share compute. Rows of
// one session move in lockstep (the KV cache holds one position for all), so requests arriving later form
// their own session; the loop steps every live session in turn, yielding to the event loop after each
// step so cancellations, deadlines and new requests are seen between two steps. A cancelled request's rows
// leave the very next forward pass.
import type { RowResult, RowSpec, SamplingModel, SamplingSession } from './engine.ts';
import { DrainingError, GenerationStoppedError, OverloadedError } from './errors.ts';

export interface SchedulerOptions {
  /** Requests generating at once (the rest wait in the queue). */
  maxConcurrent: number;
  /** Requests that may wait; one more is refused with OverloadedError (RESOURCE_EXHAUSTED). */
  maxQueue: number;
  /** Rows (images) in one session's forward pass; ≥ 16 so any single request fits. */
  maxBatchRows: number;
  /** A new session starts only once its oldest request waited this long (or rows fill a batch), so
   *  requests arriving close together share one session instead of each paying for its own passes. */
  batchWindowMs: number;
}

export const defaultSchedulerOptions: SchedulerOptions = {
  maxConcurrent: 16,
  maxQueue: 64,
  maxBatchRows: 64,
  batchWindowMs: 10,
};

/** A finished image, before PNG encoding. */
export interface SampledImage {
  index: number;
  tokens: Int32Array;
  score: number;
  /** [resolution, resolution, 3] RGB. */
  rgb: Uint8Array;
}

/** Per-request figures (also what the Done event's timings report). */
export interface JobStats {
  enqueuedAt: number;
  startedAt: number | undefined;
  sampledAt: number | undefined;
  decodedAt: number | undefined;
  /** Forward passes that advanced this request's rows. */
  steps: number;
  /** Of those, the ones shared with at least one other request. */
  sharedSteps: number;
}

export interface JobListener {
  /** Position in the queue changed (0 = started generating). */
  onQueued?(position: number): void;
  /** After each forward pass that advanced this request: tokens done per image. */
  onProgress?(tokensDone: number[]): void;
}

/** Fired for every forward pass; the seam for metrics, traces and tests that count compute. */
export interface StepEvent {
  model: string;
  version: number;
  /** Rows in the forward pass, and the requests they belong to. */
  rows: number;
  jobs: number[];
  /** Token position sampled (0-based). */
  position: number;
  ms: number;
}

export interface SchedulerObserver {
  onStep?(e: StepEvent): void;
}

let nextJobId = 1;

/** One request inside the scheduler. Settles with its images or a GenerationStoppedError. */
export class Job {
  readonly id = nextJobId++;
  readonly stats: JobStats = {
    enqueuedAt: performance.now(),
    startedAt: undefined,
    sampledAt: undefined,
    decodedAt: undefined,
    steps: 0,
    sharedSteps: 0,
  };
  readonly result: Promise<SampledImage[]>;
  /** Tokens sampled per image so far. */
  position = 0;
  stopped: GenerationStoppedError | undefined;
  /** Set while the job is in a session: the session and the job's row indices in it. */
  placement: { session: LiveSession; rows: number[] } | undefined;
  readonly results: (RowResult | undefined)[];
  private settle!: { resolve: (v: SampledImage[]) => void; reject: (e: Error) => void };
  private settled = false;

  constructor(
    readonly model: SamplingModel,
    readonly rows: RowSpec[],
    readonly listener: JobListener,
    private readonly scheduler: Scheduler,
  ) {
    this.results = rows.map(() => undefined);
    this.result = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    // A caller that stops listening must not cause an unhandled rejection.
    this.result.catch(() => {});
  }

  get finished(): boolean {
    return this.settled;
  }

  /** Stops the request: dropped from the queue, or its rows leave the next forward pass. Idempotent. */
  cancel(reason: GenerationStoppedError['reason']): void {
    if (this.settled) return;
    this.scheduler.cancel(this, reason);
  }

  /** @internal */
  resolve(images: SampledImage[]): void {
    if (this.settled) return;
    this.settled = true;
    this.settle.resolve(images);
  }

  /** @internal */
  reject(err: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.settle.reject(err);
  }
}

/** A session and which request owns each of its rows. */
interface LiveSession {
  model: SamplingModel;
  session: SamplingSession;
  /** Row → [job, image index]. */
  owners: [Job, number][];
  jobs: Set<Job>;
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A place held for a request that still has to load its model (see `reserve`). */
export interface Reservation {
  /** Gives the place back (the request failed before it was queued). Idempotent. */
  release(): void;
}

export class Scheduler {
  readonly options: SchedulerOptions;
  private readonly queue: Job[] = [];
  /** Places held by requests that are admitted but not yet queued (their model is loading). */
  private reserved = 0;
  private readonly sessions: LiveSession[] = [];
  private running = false;
  private draining = false;
  private idleWaiters: (() => void)[] = [];
  /** Totals since start (forward passes, and rows advanced by them). */
  readonly totals = { steps: 0, rowSteps: 0, jobsDone: 0, jobsStopped: 0 };

  constructor(
    options: Partial<SchedulerOptions> = {},
    private readonly observer: SchedulerObserver = {},
  ) {
    this.options = { ...defaultSchedulerOptions, ...options };
    const o = this.options;
    for (const k of ['maxConcurrent', 'maxBatchRows'] as const) {
      if (!(Number.isInteger(o[k]) && o[k] >= 1))
        throw new RangeError(`scheduler ${k} must be a positive integer, got ${o[k]}`);
    }
    if (!(Number.isInteger(o.maxQueue) && o.maxQueue >= 0))
      throw new RangeError(`scheduler maxQueue must be a non-negative integer, got ${o.maxQueue}`);
    if (o.maxBatchRows < 16)
      throw new RangeError(
        `scheduler maxBatchRows must be ≥ 16 (one request may ask for 16 images), got ${o.maxBatchRows}`,
      );
    if (!(o.batchWindowMs >= 0))
      throw new RangeError(`scheduler batchWindowMs must be ≥ 0, got ${o.batchWindowMs}`);
  }

  /** Requests generating now. */
  get active(): number {
    return this.sessions.reduce((n, s) => n + s.jobs.size, 0);
  }

  get queued(): number {
    return this.queue.length;
  }

  /** Rows in all live sessions. */
  get activeRows(): number {
    return this.sessions.reduce((n, s) => n + s.session.liveRows, 0);
  }

  /** Admission before any work: holds a place for a request (counted like a queued one) while its model
   *  loads, so a burst of requests for versions nobody holds cannot make the server load them all. Throws
   *  DrainingError or OverloadedError. */
  reserve(): Reservation {
    this.admissionCheck();
    this.reserved++;
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        this.reserved--;
      },
    };
  }

  private admissionCheck(): void {
    if (this.draining) throw new DrainingError();
    // Admission counts what is waiting beyond the free generation slots.
    const free = Math.max(0, this.options.maxConcurrent - this.active);
    const waiting = this.queue.length + this.reserved;
    if (waiting - free >= this.options.maxQueue)
      throw new OverloadedError(waiting, this.options.maxQueue, this.active);
  }

  /** Queues a request (taking over `reservation`'s place, if given). Throws DrainingError or
   *  OverloadedError (nothing queued then). */
  submit(model: SamplingModel, rows: RowSpec[], listener: JobListener = {}, reservation?: Reservation): Job {
    if (rows.length < 1 || rows.length > this.options.maxBatchRows)
      throw new RangeError(`a request needs 1..${this.options.maxBatchRows} rows, got ${rows.length}`);
    if (reservation) {
      reservation.release();
      if (this.draining) throw new DrainingError();
    } else this.admissionCheck();
    const job = new Job(model, rows, listener, this);
    this.queue.push(job);
    listener.onQueued?.(this.queue.length - 1);
    void this.loop();
    return job;
  }

  /** @internal (Job.cancel) */
  cancel(job: Job, reason: GenerationStoppedError['reason']): void {
    job.stopped = new GenerationStoppedError(reason, job.position);
    const qi = this.queue.indexOf(job);
    if (qi >= 0) {
      this.queue.splice(qi, 1);
      this.notifyQueuePositions(qi);
    }
    if (job.placement) for (const r of job.placement.rows) job.placement.session.session.cancel(r);
    this.totals.jobsStopped++;
    job.reject(job.stopped);
  }

  /** Refuses new requests from now on; resolves when every queued and active request has settled. */
  drain(): Promise<void> {
    this.draining = true;
    return this.whenIdle();
  }

  /** Stops every queued and active request with the given reason (e.g. shutdown after a drain timeout). */
  stopAll(reason: GenerationStoppedError['reason']): void {
    for (const j of [...this.queue]) j.cancel(reason);
    for (const s of this.sessions) for (const j of s.jobs) j.cancel(reason);
  }

  whenIdle(): Promise<void> {
    if (!this.running && this.queue.length === 0 && this.sessions.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  private async loop(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length > 0 || this.sessions.length > 0) {
        // Idle → first arrival: give near-simultaneous requests the window to arrive and share one session.
        if (this.sessions.length === 0 && this.queue.length > 0) {
          const wait = this.options.batchWindowMs - (performance.now() - this.queue[0]!.stats.enqueuedAt);
          if (wait > 0) await sleep(wait);
        }
        this.admit();
        for (const s of [...this.sessions]) {
          this.step(s);
          await yieldToEventLoop();
        }
      }
    } finally {
      this.running = false;
      const waiters = this.idleWaiters.splice(0);
      for (const w of waiters) w();
    }
  }

  /** Moves queued requests (FIFO, no overtaking) into new sessions, one per model, while limits allow. */
  private admit(): void {
    const head = this.queue[0];
    if (!head) return;
    const queuedRows = this.queue.reduce((n, j) => n + j.rows.length, 0);
    const waited = performance.now() - head.stats.enqueuedAt;
    if (
      this.sessions.length > 0 &&
      waited < this.options.batchWindowMs &&
      queuedRows < this.options.maxBatchRows
    )
      return;
    const groups: { model: SamplingModel; jobs: Job[]; rows: number }[] = [];
    let jobs = this.active;
    while (this.queue.length > 0 && jobs < this.options.maxConcurrent) {
      const job = this.queue.shift()!;
      const last = [...groups].reverse().find((g) => g.model === job.model);
      if (last && last.rows + job.rows.length <= this.options.maxBatchRows) {
        last.jobs.push(job);
        last.rows += job.rows.length;
      } else {
        groups.push({ model: job.model, jobs: [job], rows: job.rows.length });
      }
      jobs++;
    }
    if (groups.length === 0) return;
    for (const { model, jobs: group } of groups) {
      const owners: [Job, number][] = [];
      for (const j of group) j.rows.forEach((_, i) => owners.push([j, i]));
      let session: SamplingSession;
      try {
        session = model.start(owners.map(([j, i]) => j.rows[i]!));
      } catch (e) {
        for (const j of group) j.reject(e as Error);
        continue;
      }
      const live: LiveSession = { model, session, owners, jobs: new Set(group) };
      let at = 0;
      for (const j of group) {
        j.placement = { session: live, rows: j.rows.map((_, i) => at + i) };
        at += j.rows.length;
        j.stats.startedAt = performance.now();
        j.listener.onQueued?.(0);
      }
      this.sessions.push(live);
    }
    this.notifyQueuePositions(0);
  }

  private notifyQueuePositions(from: number): void {
    for (let i = from; i < this.queue.length; i++) this.queue[i]!.listener.onQueued?.(i);
  }

  /** One forward pass of a session, then bookkeeping: progress, finished rows, decoding, cleanup. */
  private step(s: LiveSession): void {
    for (const j of [...s.jobs]) if (j.finished) s.jobs.delete(j); // cancelled since the last step
    if (s.session.done || s.jobs.size === 0) return this.retire(s);
    const rows = s.session.liveRows;
    const jobs = [...s.jobs];
    const position = s.session.position;
    const t0 = performance.now();
    let finishedRows: { row: number; result: RowResult }[];
    try {
      finishedRows = s.session.step();
    } catch (e) {
      for (const j of jobs) j.reject(e as Error);
      return this.retire(s);
    }
    const ms = performance.now() - t0;
    this.totals.steps++;
    this.totals.rowSteps += rows;
    this.observer.onStep?.({
      model: s.model.facts.name,
      version: s.model.facts.version,
      rows,
      jobs: jobs.map((j) => j.id),
      position,
      ms,
    });
    for (const j of jobs) {
      j.stats.steps++;
      if (jobs.length > 1) j.stats.sharedSteps++;
      j.position = s.session.position;
    }
    for (const { row, result } of finishedRows) {
      const [job, index] = s.owners[row]!;
      job.results[index] = result;
    }
    for (const j of jobs) j.listener.onProgress?.(j.rows.map(() => j.position));
    const complete = jobs.filter((j) => j.results.every((r) => r !== undefined));
    if (complete.length > 0) this.decode(s.model, complete);
    for (const j of complete) s.jobs.delete(j);
    if (s.session.done || s.jobs.size === 0) this.retire(s);
  }

  /** dVAE-decodes the images of every request that completed in this step, in one batch. */
  private decode(model: SamplingModel, jobs: Job[]): void {
    const grid2 = model.facts.grid * model.facts.grid;
    const n = jobs.reduce((a, j) => a + j.rows.length, 0);
    const tokens = new Int32Array(n * grid2);
    let at = 0;
    for (const j of jobs) {
      j.stats.sampledAt = performance.now();
      for (const r of j.results) {
        tokens.set(r!.tokens, at * grid2);
        at++;
      }
    }
    let rgb: Uint8Array;
    try {
      rgb = model.decode(tokens, n);
    } catch (e) {
      for (const j of jobs) j.reject(e as Error);
      return;
    }
    const px = model.facts.resolution * model.facts.resolution * 3;
    at = 0;
    for (const j of jobs) {
      const images = j.results.map((r, index) => {
        const img = { index, tokens: r!.tokens, score: r!.score, rgb: rgb.slice(at * px, (at + 1) * px) };
        at++;
        return img;
      });
      j.stats.decodedAt = performance.now();
      j.placement = undefined;
      this.totals.jobsDone++;
      j.resolve(images);
    }
  }

  private retire(s: LiveSession): void {
    s.session.dispose();
    for (const j of s.jobs) if (j.placement?.session === s) j.placement = undefined;
    const i = this.sessions.indexOf(s);
    if (i >= 0) this.sessions.splice(i, 1);
  }
}
