import { initTelemetry, shutdownTelemetry } from '../../telemetry/index.ts';
import { command, parseCommand, readers } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({
  name: 'worker',
  summary: commands.worker.summary,
  options: {
    slots: {
      type: 'string',
      value: 'N',
      help: 'rank activities run at once (default 1: a kill takes out one rank)',
    },
    threads: {
      type: 'string',
      value: 'N',
      help: "the native backend's kernel threads (default: every core); with several workers on one host, give each its share",
    },
    'task-queue': { type: 'string', value: 'Q', help: 'task queue to poll (default dalle-train)' },
  },
});

export async function run(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const slots = readers(cli).int('slots', values.slots, 1) ?? 1;
  // Fixed when TensorFlow loads (on the first rank). A process's ranks issue their kernels one at a time
  // from its single JS thread, so threads are this process's share of the host's cores, not per slot.
  const threads = readers(cli).int('threads', values.threads, 1);
  if (threads !== undefined) process.env.DALLE_THREADS = String(threads);
  const { runWorker } = await import('../worker/worker.ts'); // the Temporal worker, every activity, tfjs
  initTelemetry({ serviceName: 'dalle-worker' });
  try {
    await runWorker({ slots, taskQueue: values['task-queue'] });
  } finally {
    await shutdownTelemetry(); // flushes the last spans and metrics after a graceful stop
  }
}
