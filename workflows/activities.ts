// Activity stubs with the timeouts and retry rules each kind of activity needs.
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { createActivities } from '../activities/index.ts';

type Acts = ReturnType<typeof createActivities>;

/** Rank activities are never retried by Temporal: a rank cannot rejoin its group alone. The workflow
 *  relaunches the whole segment instead, at once: a cancelled rank stops at its next step boundary (or
 *  wait) on its own, and a dead worker's rank would only settle at its heartbeat timeout, so the workflow
 *  does not wait for either (a new group id keeps old and new ranks apart). */
export function rankActivities(heartbeatTimeoutSec: number, placed?: { taskQueue: string; waitSec: number }) {
  return proxyActivities<Acts>({
    // A rank placed on a host's queue waits there at most waitSec for one of the host's workers.
    ...(placed && { taskQueue: placed.taskQueue, scheduleToStartTimeout: `${placed.waitSec} seconds` }),
    startToCloseTimeout: '7 days',
    heartbeatTimeout: `${heartbeatTimeoutSec} seconds`,
    retry: { maximumAttempts: 1 },
    cancellationType: ActivityCancellationType.TRY_CANCEL,
  });
}

/** Short bookkeeping activities: retried with backoff; errors that retrying cannot fix are non-retryable. */
export const utilityActivities = proxyActivities<Acts>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 10, initialInterval: '1 second', maximumInterval: '30 seconds' },
});
