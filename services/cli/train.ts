// `dalle train --config <preset|file> [--run-id ID] [--detach]`: validates the spec (a bad one never
// reaches Temporal), starts workflow `trainDalle` with id = run id, and shows live progress until it ends.
import { randomBytes } from 'node:crypto';
import {
  WorkflowExecutionAlreadyStartedError,
  WorkflowFailedError,
  type Client,
  type WorkflowHandle,
} from '@temporalio/client';
import { loadSpec, specHash, type RunSpec } from '../../config/index.ts';
import {
  TASK_QUEUE,
  WORKFLOW_TYPE,
  type RunProgress,
  type TrainDalleWorkflow,
} from '../../contract/index.ts';
import { SpecMismatchError, type CheckpointStore } from '../../store/checkpoints.ts';
import { command, parseCommand, usageError, UsageError } from './args.ts';
import { commands } from './commands.ts';
import { openRunRecords, runProgress } from './run-progress.ts';
import { qualityLine } from '../../eval/quality-line.ts';
import { temporalClient } from './temporal.ts';
import { ATTR, dalleMetrics, initTelemetry, shutdownTelemetry, withSpan } from '../../telemetry/index.ts';

export function progressLine(p: RunProgress): string {
  const width = 24;
  const frac = p.totalSteps ? Math.min(1, p.step / p.totalSteps) : 0;
  const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
  const num = (v: number | null, d = 4) => (v === null || !Number.isFinite(v) ? '-' : v.toFixed(d));
  return `${p.stage.padEnd(11)} [${bar}] ${p.step}/${p.totalSteps} loss ${num(p.loss)} ${num(p.stepsPerSec, 2)} steps/s ckpt ${p.checkpointStep} W=${p.worldSize} restarts ${p.restarts}${p.paused ? ' PAUSED' : ''}`;
}

export const cli = command({
  name: 'train',
  summary: commands.train.summary,
  options: {
    config: {
      type: 'string',
      value: '<preset|file>',
      help: 'a preset (tiny, shapes, cub, paper-12b) or a JSON/YAML file',
      required: true,
    },
    'run-id': {
      type: 'string',
      value: 'ID',
      help: 'the run id (= workflow id); default <preset>-<time>-<random>',
    },
    detach: { type: 'boolean', help: 'print the run id and return once the run has started' },
    json: { type: 'boolean', help: 'print the result (or, with --detach, the run id) as JSON' },
  },
});

export async function run(argv: string[]): Promise<number> {
  const { values } = parseCommand(argv, cli);
  const spec = loadSpec(values.config!); // throws ConfigError naming every bad field, before any workflow starts
  const runId =
    values['run-id'] ??
    `${spec.preset}-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}-${randomBytes(3).toString('hex')}`;
  if (!/^[A-Za-z0-9_-]+$/.test(runId))
    throw usageError(cli, `--run-id '${runId}' may contain only letters, digits, - and _`);
  // One trace per run: this span is the parent of StartWorkflow:trainDalle and everything the workers do.
  initTelemetry({ serviceName: 'dalle-cli', runId });
  // Counters start at 0, so a clean run reports 0 restarts rather than nothing (workers add the relaunches).
  for (const stage of [
    'dvae',
    'transformer',
    ...(spec.rerank.steps > 0 ? (['rerank'] as const) : []),
  ] as const)
    dalleMetrics().restarts.add(0, { 'dalle.run_id': runId, 'dalle.stage': stage });
  try {
    return await withSpan(
      'dalle train',
      { [ATTR.runId]: runId, 'dalle.preset': spec.preset, 'dalle.detach': !!values.detach },
      async () => {
        const { client, close } = await temporalClient();
        // Step and loss come from rank 0's record in NATS; without NATS the line shows the workflow's view
        // (and the workers still refuse a run id whose checkpoints are of another spec).
        const records = await openRunRecords(true);
        try {
          const handle = await startRun(client, records.checkpoints, runId, spec);
          if (values.detach) {
            console.log(values.json ? JSON.stringify({ runId }) : runId);
            return 0;
          }
          return await followRun(client, records.checkpoints, handle, runId, !!values.json);
        } finally {
          await records.close();
          await close();
        }
      },
    );
  } finally {
    await shutdownTelemetry();
  }
}

/** Starts trainDalle as `runId`, unless that id already holds checkpoints of another spec or is running. */
async function startRun(
  client: Client,
  checkpoints: CheckpointStore | undefined,
  runId: string,
  spec: RunSpec,
) {
  const recorded = await checkpoints?.recordedSpecHash(runId);
  if (recorded && recorded !== specHash(spec)) throw new SpecMismatchError(runId, recorded, specHash(spec));
  const handle = await client.workflow
    .start<TrainDalleWorkflow>(WORKFLOW_TYPE.trainDalle, {
      taskQueue: TASK_QUEUE,
      workflowId: runId,
      args: [{ runId, spec }],
    })
    .catch((e: Error) => {
      if (e instanceof WorkflowExecutionAlreadyStartedError)
        throw new UsageError(`run ${runId} is already running (see: dalle status ${runId})`, 'train');
      throw e;
    });
  process.stderr.write(
    `run ${runId} started (workflow ${WORKFLOW_TYPE.trainDalle}, task queue ${TASK_QUEUE})\n`,
  );
  return handle;
}

/** Shows the run's progress on stderr until it ends; its result on stdout. Exit code 1 if it failed. */
async function followRun(
  client: Client,
  checkpoints: CheckpointStore | undefined,
  handle: WorkflowHandle<TrainDalleWorkflow>,
  runId: string,
  json: boolean,
): Promise<number> {
  const tty = process.stderr.isTTY;
  const timer = setInterval(progressPrinter(client, checkpoints, runId, tty), 1000);
  try {
    const result = await handle.result();
    if (tty) process.stderr.write('\n');
    console.log(
      json
        ? JSON.stringify(result)
        : `run ${runId} completed: model ${result.model.name} v${result.model.version}, restarts ${result.restarts}`,
    );
    return 0;
  } catch (e) {
    if (tty) process.stderr.write('\n');
    if (e instanceof WorkflowFailedError) {
      console.error(`run ${runId} failed: ${e.cause?.message ?? e.message}`);
      return 1;
    }
    throw e;
  } finally {
    clearInterval(timer);
  }
}

/** One tick of the progress display: the bar redrawn in place on a terminal, a line every 10 s otherwise,
 *  and each checkpoint's quality once on its own line. */
function progressPrinter(
  client: Client,
  checkpoints: CheckpointStore | undefined,
  runId: string,
  tty: boolean,
): () => Promise<void> {
  let lastPrint = 0;
  let lastQuality = 0;
  return async () => {
    try {
      const p = await runProgress(client, checkpoints, runId);
      if (!p) return;
      // Newest last; the list may be thinned.
      const newest = p.quality?.at(-1);
      if (newest && newest.at > lastQuality) {
        lastQuality = newest.at;
        process.stderr.write(`${tty ? '\r\x1b[K' : ''}quality: ${qualityLine(newest)}\n`);
      }
      const line = progressLine(p);
      if (tty) process.stderr.write(`\r${line}\x1b[K`);
      else if (Date.now() - lastPrint > 10_000) {
        lastPrint = Date.now();
        process.stderr.write(`${line}\n`);
      }
    } catch {
      // no worker yet, or between stages: the next tick will tell
    }
  };
}
