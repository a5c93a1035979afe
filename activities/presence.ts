// Which workers are there right now, and how many of their rank slots are idle: a scatter-gather over core
// NATS. Every `dalle worker` answers requests on PRESENCE_SUBJECT; the asker collects the answers that
// arrive within a short window. Nothing is stored, so a dead worker is simply absent from the next answer
// (no lease to expire), which is what an elastic run needs to adopt workers that joined.
import { RequestStrategy, type NatsConnection, type Subscription } from 'nats';
import { z } from 'zod';
import { WORKER_PRESENCE_SUBJECT } from '../security/nats-accounts.ts';

/** Request-reply subject every worker answers (three tokens: never a collective group's subject; a
 *  secured cluster's worker role may use it). */
export const PRESENCE_SUBJECT = WORKER_PRESENCE_SUBJECT;

export const WorkerPresence = z.strictObject({
  /** The worker's Temporal identity. */
  identity: z.string(),
  /** The machine it runs on (`dalle worker --host-id`, default the hostname). */
  hostId: z.string(),
  taskQueue: z.string(),
  /** Rank slots (`--slots`) and activities running in them now. */
  slots: z.number().int().nonnegative(),
  busy: z.number().int().nonnegative(),
});
export type WorkerPresence = z.infer<typeof WorkerPresence>;

/** Answers presence requests with `info()` until the subscription is closed. */
export function answerPresence(nc: NatsConnection, info: () => WorkerPresence): Subscription {
  const enc = new TextEncoder();
  return nc.subscribe(PRESENCE_SUBJECT, {
    callback: (err, m) => {
      if (!err && m.reply) m.respond(enc.encode(JSON.stringify(info())));
    },
  });
}

/** The workers of `taskQueue` that answer within `waitMs` (answers that do not parse are ignored: an
 *  older or foreign process on the subject must not break a run). */
export async function surveyWorkers(
  nc: NatsConnection,
  taskQueue: string,
  waitMs = 500,
): Promise<WorkerPresence[]> {
  const out: WorkerPresence[] = [];
  const dec = new TextDecoder();
  try {
    const replies = await nc.requestMany(PRESENCE_SUBJECT, undefined, {
      strategy: RequestStrategy.Timer,
      maxWait: waitMs,
    });
    for await (const m of replies) {
      let body: unknown;
      try {
        body = JSON.parse(dec.decode(m.data));
      } catch {
        continue;
      }
      const p = WorkerPresence.safeParse(body);
      if (p.success && p.data.taskQueue === taskQueue) out.push(p.data);
    }
  } catch (e) {
    // No worker at all answers with "no responders": an empty survey, not a failure.
    if ((e as { code?: string }).code !== '503') throw e;
  }
  return out;
}

/** Rank slots no activity is using, over every worker that answered. */
export function idleSlots(workers: readonly WorkerPresence[]): number {
  return workers.reduce((n, w) => n + Math.max(0, w.slots - w.busy), 0);
}
