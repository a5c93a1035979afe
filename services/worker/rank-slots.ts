// A worker process's rank slots, shared by its two Temporal workers: the shared queue's and its host's
// (`dalle-train@<host>`, where placed ranks of sharded runs arrive). Temporal reserves a slot before it
// polls, so each worker holds at most `slots` reservations of its own, and none is issued while `slots`
// activities already run in the process: a 1-slot worker that runs a rank stops polling both queues. (Two
// reservations held at once, one per queue, can still both be answered if tasks reach both queues in the
// same instant; a placement only targets hosts whose slots the survey saw free, so that is rare.)
import type { ActivitySlotInfo, CustomSlotSupplier, WorkerTuner } from '@temporalio/worker';

export class RankSlots {
  private running = 0;
  private uncounted = 0;
  private readonly waiting = new Set<() => void>();

  /** `notBusy`: activity types that hold a slot but are not reported as busy (the placement survey's own
   *  activity must not make its worker's host look full). */
  constructor(
    readonly slots: number,
    private readonly notBusy: readonly string[] = [],
  ) {}

  /** Activities running now over both workers, as the presence survey reports them. */
  get busy(): number {
    return this.running - this.uncounted;
  }

  /** The tuner of one of the process's workers (workflow tasks and local activities: Temporal's defaults). */
  tuner(): WorkerTuner {
    return {
      activityTaskSlotSupplier: this.supplier(),
      workflowTaskSlotSupplier: { type: 'fixed-size', numSlots: 40 },
      localActivityTaskSlotSupplier: { type: 'fixed-size', numSlots: 100 },
      nexusTaskSlotSupplier: { type: 'fixed-size', numSlots: 100 },
    };
  }

  private changed(): void {
    for (const wake of [...this.waiting]) wake();
  }

  private supplier(): CustomSlotSupplier<ActivitySlotInfo> {
    let held = 0;
    const free = () => held < this.slots && this.running < this.slots;
    return {
      type: 'custom',
      reserveSlot: async (_ctx, abort) => {
        while (!free()) {
          await new Promise<void>((resolve, reject) => {
            const done = () => {
              this.waiting.delete(done);
              abort.removeEventListener('abort', done);
              if (abort.aborted) reject(abort.reason);
              else resolve();
            };
            this.waiting.add(done);
            abort.addEventListener('abort', done);
          });
        }
        held++;
        return {};
      },
      tryReserveSlot: () => (free() ? (held++, {}) : null),
      markSlotUsed: (ctx) => {
        this.running++;
        if (this.notBusy.includes(ctx.slotInfo.activityType)) this.uncounted++;
      },
      releaseSlot: (ctx) => {
        held--;
        if (ctx.slotInfo) {
          this.running--;
          if (this.notBusy.includes(ctx.slotInfo.activityType)) this.uncounted--;
        }
        this.changed();
      },
    };
  }
}
