// Errors that no retry or relaunch can fix (a bad spec, a missing dataset, a checkpoint of another
// architecture) end the run at once with the original message instead of burning restarts. An error class
// says so itself with `readonly fatal = true` (the folders below activities/ cannot import anything of
// Temporal's, so the marker is a plain property); zod's errors, which we cannot mark, are fatal too.
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';

/** True for an error whose class is marked `fatal`, and for zod's validation errors. */
export function isFatal(err: unknown): err is Error {
  return err instanceof z.ZodError || (err instanceof Error && (err as { fatal?: unknown }).fatal === true);
}

/** Memory that could not be had (a typed array, a wasm heap, a tensor): relaunching the same segment asks for
 *  the same memory again, so it is fatal rather than retried until maxRestarts. The wasm backend's heap
 *  grows to at most 4 GiB; past that its allocator returns no block and copying a tensor in fails with
 *  "offset is out of bounds" (errors.test.ts makes each of these for real). */
export function isAllocationFailure(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  return ALLOCATION_FAILURE.test(err.message);
}

const ALLOCATION_FAILURE = new RegExp(
  [
    'allocation failed', // ArrayBuffer; V8's heap
    'invalid (typed )?array length', // typed arrays and arrays beyond what V8 allows
    'maximum memory size exceeded', // WebAssembly.Memory.grow
    'offset is out of bounds', // a tensor copied into a full wasm heap
    'out of memory',
    'OOM when allocating', // TensorFlow (native backend)
    'failed to allocate',
    'cannot allocate memory', // ENOMEM
  ].join('|'),
  'i',
);

export function asNonRetryable(err: unknown): unknown {
  if (err instanceof ApplicationFailure) return err;
  if (isAllocationFailure(err)) {
    const e = err as Error;
    return ApplicationFailure.create({
      message: `out of memory: ${e.message} (a smaller batchSize or model, or a machine with more memory, is needed)`,
      type: 'OutOfMemoryError',
      nonRetryable: true,
      cause: e,
    });
  }
  if (isFatal(err)) {
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
