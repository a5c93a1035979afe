import { initTelemetry, shutdownTelemetry } from '../../telemetry/index.ts';
import { runWorker } from '../worker/worker.ts';
import { parse, UsageError } from './args.ts';

export async function run(argv: string[]): Promise<void> {
  const { values } = parse(
    argv,
    { slots: { type: 'string' }, 'task-queue': { type: 'string' } },
    'dalle worker [--slots N] [--task-queue Q]',
  );
  const slots = values.slots === undefined ? 1 : Number(values.slots);
  if (!Number.isInteger(slots) || slots < 1)
    throw new UsageError(`--slots must be a positive integer, got '${values.slots}'`);
  initTelemetry({ serviceName: 'dalle-worker' });
  try {
    await runWorker({ slots, taskQueue: values['task-queue'] });
  } finally {
    await shutdownTelemetry(); // flushes the last spans and metrics after a graceful stop
  }
}
