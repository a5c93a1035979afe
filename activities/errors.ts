// Errors that no retry or relaunch can fix (a bad spec, a missing dataset, a checkpoint of another
// architecture) end the run at once with the original message instead of burning restarts.
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';

const FATAL = new Set([
  'ConfigError',
  'ZodError',
  'CollectiveArgumentError',
  'DatasetNotFoundError',
  'DatasetFormatError',
  'EmptyDatasetError',
  'BatchOptionsError',
  'DvaeConfigError',
  'StateMismatchError',
  'TokenizerOptionsError',
  'MaskGeometryError',
  'AdamWConfigError',
]);

export function asNonRetryable(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (err instanceof Error && (FATAL.has(err.name) || err instanceof z.ZodError)) {
    return ApplicationFailure.create({
      message: `${err.name}: ${err.message}`,
      type: err.name,
      nonRetryable: true,
      cause: err,
    });
  }
  return err;
}

/** Wraps every activity so fatal errors become non-retryable failures. */
export function withFatalErrors<T extends Record<string, (...a: any[]) => Promise<unknown>>>(acts: T): T {
  return Object.fromEntries(
    Object.entries(acts).map(([k, fn]) => [
      k,
      async (...args: unknown[]) => {
        try {
          return await fn(...args);
        } catch (e) {
          throw asNonRetryable(e);
        }
      },
    ]),
  ) as T;
}
