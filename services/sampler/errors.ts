// Every way a sampling request can fail, one Error subclass each, and the single place that maps them to
// gRPC status codes (handlers never pick a code themselves).
import { Metadata, status, type StatusObject } from '@grpc/grpc-js';
import { ErrorCode, NatsError } from 'nats';
import { CorruptModelError, ModelNotFoundError } from '../../store/index.ts';

/** A request field is missing or out of range. `field` is the proto field name (e.g. `num_images`). */
export class InvalidArgumentError extends Error {
  override name = 'InvalidArgumentError';
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

/** The wait queue, or the rows the sampler holds, are full: the caller should back off and retry (or go to
 *  another replica). `rows` is set when the rows were the limit (candidates and guidance take rows). */
export class OverloadedError extends Error {
  override name = 'OverloadedError';
  constructor(
    readonly queued: number,
    readonly maxQueue: number,
    readonly active: number,
    readonly rows?: { held: number; request: number; max: number },
  ) {
    super(
      rows
        ? `sampler overloaded: ${rows.held} image rows generating or queued and this request needs ${rows.request} (limit ${rows.max} rows, --max-rows); retry later`
        : `sampler overloaded: ${active} requests generating and ${queued} queued (queue limit ${maxQueue}); retry later`,
    );
  }
}

/** No version of the model has been loaded yet (health is NOT_SERVING until one is). */
export class NoModelLoadedError extends Error {
  override name = 'NoModelLoadedError';
  constructor(readonly model: string) {
    super(`model '${model}' is not loaded yet (no published version seen, or its load failed)`);
  }
}

/** The server is shutting down and takes no new requests; in-flight ones finish. */
export class DrainingError extends Error {
  override name = 'DrainingError';
  constructor() {
    super('sampler is draining for shutdown; send the request to another replica');
  }
}

/** The request was stopped before it finished: the client cancelled, its deadline passed, or shutdown. */
export class GenerationStoppedError extends Error {
  override name = 'GenerationStoppedError';
  constructor(
    readonly reason: 'cancelled' | 'deadline' | 'shutdown',
    /** Tokens sampled per image when it stopped. */
    readonly tokensDone: number,
  ) {
    super(`generation stopped (${reason}) after ${tokensDone} tokens per image`);
  }
}

/** A model bundle could not be turned into a sampling model (bad spec, weights that do not fit, …). */
export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
  constructor(
    readonly model: string,
    readonly version: number,
    override readonly cause: unknown,
  ) {
    super(
      `loading model ${model} v${version} failed: ${cause instanceof Error ? cause.message : String(cause)}`,
    );
  }
}

/** Damaged or forged stored data somewhere in the cause chain (errors marked `corrupt`). */
function isCorrupt(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 6; e = e.cause, depth++)
    if ((e as { corrupt?: boolean }).corrupt === true) return true;
  return false;
}

/** NATS is away or not answering (a restart, a network cut): the model store cannot be read right now.
 *  The client should retry, so this is UNAVAILABLE, not INTERNAL. */
const NATS_UNREACHABLE: readonly string[] = [
  ErrorCode.Timeout,
  ErrorCode.Disconnect,
  ErrorCode.ConnectionClosed,
  ErrorCode.ConnectionDraining,
  ErrorCode.ConnectionRefused,
  ErrorCode.NoResponders,
];

function natsUnreachable(err: unknown): boolean {
  return err instanceof NatsError && NATS_UNREACHABLE.includes(err.code);
}

/** The one mapping from failures to gRPC statuses. Unknown errors are INTERNAL with their message. */
export function toStatus(err: unknown): Partial<StatusObject> & { code: status } {
  const details = err instanceof Error ? err.message : String(err);
  const code = (() => {
    if (err instanceof InvalidArgumentError) return status.INVALID_ARGUMENT;
    if (err instanceof OverloadedError) return status.RESOURCE_EXHAUSTED;
    if (err instanceof NoModelLoadedError || err instanceof DrainingError || natsUnreachable(err))
      return status.UNAVAILABLE;
    if (err instanceof ModelNotFoundError) return status.NOT_FOUND;
    if (err instanceof CorruptModelError || isCorrupt(err)) return status.DATA_LOSS;
    if (err instanceof ModelLoadError) return status.FAILED_PRECONDITION;
    if (err instanceof GenerationStoppedError) {
      return err.reason === 'deadline'
        ? status.DEADLINE_EXCEEDED
        : err.reason === 'shutdown'
          ? status.UNAVAILABLE
          : status.CANCELLED;
    }
    return status.INTERNAL;
  })();
  const metadata = new Metadata();
  // The offending field, machine-readable, for clients that want more than the message.
  if (err instanceof InvalidArgumentError) metadata.set('dalle-invalid-field', err.field);
  return { code, details, metadata };
}
