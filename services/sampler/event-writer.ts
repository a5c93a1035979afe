// Writes GenerateEvents to a server stream without outrunning the client.
//
// grpc-js server streams are Node Writables: `write()` returns false once the HTTP/2 flow-control window
// and the stream's buffer are full, and 'drain' fires when there is room again. Progress events are
// throttled and coalesced (only the newest is kept while blocked: it supersedes older ones); images and
// the final event are never dropped, and their sender awaits 'drain'. So one slow reader costs memory
// for at most one event, and never stalls the shared token steps.
import type { ServerWritableStream } from '@grpc/grpc-js';
import type { GenerateEvent, GenerateRequest, Progress } from '../../proto/gen/dalle/v1/sampler.ts';

/** Where a Generate call's events go (the gRPC stream in the server; anything else in tests). */
export interface GenerateSink {
  /** Latest progress; may be throttled or superseded. `final` bypasses the throttle. */
  progress(p: Progress, final?: boolean): void;
  /** An event that must arrive (image, done); resolves once written or once the call is gone. */
  send(event: GenerateEvent): Promise<void>;
}

export class EventWriter implements GenerateSink {
  /** write() returned false and 'drain' has not fired yet. */
  private blocked = false;
  private pendingProgress: Progress | undefined;
  private lastProgressAt = -Infinity;
  private timer: NodeJS.Timeout | undefined;
  private waiters: (() => void)[] = [];
  /** Figures for tests and metrics. */
  readonly stats = { written: 0, progressWritten: 0, progressSuperseded: 0, drainWaits: 0 };

  constructor(
    private readonly call: ServerWritableStream<GenerateRequest, GenerateEvent>,
    private readonly progressIntervalMs: number,
  ) {
    const wake = () => {
      this.blocked = false;
      const w = this.waiters.splice(0);
      for (const f of w) f();
    };
    call.on('drain', () => {
      wake();
      this.flushProgress();
    });
    // A cancelled call never drains: release every waiter so handlers can finish.
    call.on('cancelled', wake);
    call.on('close', wake);
  }

  private get gone(): boolean {
    return this.call.cancelled || this.call.destroyed || this.call.writableEnded;
  }

  private write(event: GenerateEvent): void {
    this.stats.written++;
    if (!this.call.write(event)) this.blocked = true;
  }

  progress(p: Progress, final = false): void {
    if (this.gone) return;
    if (this.pendingProgress) this.stats.progressSuperseded++;
    this.pendingProgress = p;
    const wait = this.lastProgressAt + this.progressIntervalMs - performance.now();
    if (final || wait <= 0) this.flushProgress();
    else
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.flushProgress();
      }, wait);
  }

  private flushProgress(): void {
    if (!this.pendingProgress || this.blocked || this.gone) return;
    const p = this.pendingProgress;
    this.pendingProgress = undefined;
    this.lastProgressAt = performance.now();
    this.stats.progressWritten++;
    this.write({ event: { $case: 'progress', value: p } });
  }

  async send(event: GenerateEvent): Promise<void> {
    if (this.gone) return;
    while (this.blocked && !this.gone) {
      this.stats.drainWaits++;
      await new Promise<void>((r) => this.waiters.push(r));
    }
    if (this.gone) return;
    this.flushProgress(); // progress first: events stay in the order they happened
    this.write(event);
  }

  /** Ends the stream with OK once buffered events are flushed. */
  end(): void {
    this.close();
    if (!this.gone) this.call.end();
  }

  /** Stops timers; pending progress is dropped. */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.pendingProgress = undefined;
  }
}
