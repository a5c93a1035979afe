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
    'task-queue': { type: 'string', value: 'Q', help: 'task queue to poll (default dalle-train)' },
    'host-id': {
      type: 'string',
      value: 'ID',
      help: 'the machine this worker is on (default: the hostname); ranks on one host shard parameters',
    },
  },
});

export async function run(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const slots = readers(cli).int('slots', values.slots, 1) ?? 1;
  const { runWorker } = await import('../worker/worker.ts'); // the Temporal worker, every activity, tfjs
  initTelemetry({ serviceName: 'dalle-worker' });
  try {
    const hostId = values['host-id'];
    if (hostId !== undefined && !/^[A-Za-z0-9_.-]{1,128}$/.test(hostId))
      throw readers(cli).error(`--host-id must be 1-128 characters of [A-Za-z0-9_.-], got '${hostId}'`);
    await runWorker({ slots, taskQueue: values['task-queue'], hostId });
  } finally {
    await shutdownTelemetry(); // flushes the last spans and metrics after a graceful stop
  }
}
