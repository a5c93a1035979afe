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
    'exit-when-idle': {
      type: 'string',
      value: 'S',
      help: 'stop after S seconds with no activity running (a worker started for a backlog; default: never)',
    },
    'host-id': {
      type: 'string',
      value: 'ID',
      help: 'the machine this worker is on (default: the hostname); ranks on one host shard parameters',
    },
  },
});

export async function run(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  const slots = read.int('slots', values.slots, 1) ?? 1;
  // Fixed when TensorFlow loads (on the first rank). A process's ranks issue their kernels one at a time
  // from its single JS thread, so threads are this process's share of the host's cores, not per slot.
  const threads = read.int('threads', values.threads, 1);
  if (threads !== undefined) process.env.DALLE_THREADS = String(threads);
  const hostId = values['host-id'];
  if (hostId !== undefined && !/^[A-Za-z0-9_.-]{1,128}$/.test(hostId))
    throw read.error(`--host-id must be 1-128 characters of [A-Za-z0-9_.-], got '${hostId}'`);
  const exitWhenIdleSec = read.num(
    'exit-when-idle',
    values['exit-when-idle'],
    (s) => s > 0,
    'a number of seconds > 0',
  );
  const { runWorker } = await import('../worker/worker.ts'); // the Temporal worker, every activity, tfjs
  initTelemetry({ serviceName: 'dalle-worker' });
  try {
    await runWorker({ slots, taskQueue: values['task-queue'], hostId, exitWhenIdleSec });
  } finally {
    await shutdownTelemetry(); // flushes the last spans and metrics after a graceful stop
  }
}
