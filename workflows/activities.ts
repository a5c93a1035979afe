// Activity stubs with the timeouts and retry rules each kind of activity needs.
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { createActivities } from '../activities/index.ts';

type Acts = ReturnType<typeof createActivities>;

/** Rank activities are never retried by Temporal: a rank cannot rejoin its group alone. The workflow
 *  relaunches the whole segment instead. Cancellation waits until the rank has really stopped. */
export function rankActivities(heartbeatTimeoutSec: number) {
  return proxyActivities<Acts>({
    startToCloseTimeout: '7 days',
    heartbeatTimeout: `${heartbeatTimeoutSec} seconds`,
    retry: { maximumAttempts: 1 },
    cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  });
}

/** Short bookkeeping activities: retried with backoff; errors that retrying cannot fix are non-retryable. */
export const utilityActivities = proxyActivities<Acts>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '2 minutes',
  retry: { maximumAttempts: 10, initialInterval: '1 second', maximumInterval: '30 seconds' },
});
