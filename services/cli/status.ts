// `dalle status <run> [--json]`: the workflow's state, its live progress, and the last committed checkpoint.
import { SAMPLES_PART, type CheckpointManifest, type CheckpointStore } from '../../store/index.ts';
import type {
  QualityPoint,
  RunProgress,
  TrainDalleResult,
  TrainDalleWorkflow,
} from '../../contract/index.ts';
import { qualityLine } from '../../eval/quality-line.ts';
import { command, parseCommand, usageError, UsageError } from './args.ts';
import { commands } from './commands.ts';
import { openRunRecords, runProgress } from './run-progress.ts';
import { temporalClient } from './temporal.ts';
import { progressLine } from './train.ts';

export interface RunStatus {
  runId: string;
  status: 'running' | 'completed' | 'failed';
  temporalStatus: string;
  stage: string;
  step: number;
  totalSteps: number;
  loss: number | null;
  restarts: number;
  checkpoint: { stage: string; step: number; parts: CheckpointManifest['parts'] } | null;
  /** Every stored sample grid of the run (checkpoint part `samples`, kept after pruning), oldest first. */
  samples: { stage: string; step: number; key: string }[];
  progress: RunProgress | null;
  /** The latest checkpoint measurement of each stage (the whole history is progress.quality). */
  quality: { dvae: QualityPoint | null; transformer: QualityPoint | null };
  model: TrainDalleResult['model'] | null;
  failure: string | null;
}

/** The last committed checkpoint and every stored sample grid of the run (none while no run stored anything). */
async function storedState(
  checkpoints: CheckpointStore | undefined,
  runId: string,
): Promise<Pick<RunStatus, 'checkpoint' | 'samples'>> {
  let checkpoint: RunStatus['checkpoint'] = null;
  for (const stage of ['rerank', 'transformer', 'dvae']) {
    const m = await checkpoints?.latest(runId, stage).catch(() => undefined);
    if (m) {
      checkpoint = { stage, step: m.step, parts: m.parts };
      break;
    }
  }
  const samples: RunStatus['samples'] = [];
  for (const stage of ['dvae', 'transformer'])
    for (const s of (await checkpoints?.partsNamed(runId, stage, SAMPLES_PART)) ?? [])
      samples.push({ stage, ...s });
  return { checkpoint, samples };
}

export async function runStatus(runId: string): Promise<RunStatus> {
  const { client, close } = await temporalClient();
  const records = await openRunRecords();
  try {
    const handle = client.workflow.getHandle<TrainDalleWorkflow>(runId);
    const desc = await handle.describe().catch((e: Error) => {
      throw new UsageError(`no run '${runId}': ${e.message}`, 'status');
    });
    const t = desc.status.name;
    const status: RunStatus['status'] =
      t === 'RUNNING' ? 'running' : t === 'COMPLETED' ? 'completed' : 'failed';
    let result: TrainDalleResult | null = null;
    let failure: string | null = null;
    if (status === 'completed') result = await handle.result();
    // A finished run carries its final progress in its result: no query, so no worker needs to replay it.
    const progress = result?.progress ?? (await runProgress(client, records.checkpoints, runId)) ?? null;
    if (status === 'failed')
      failure = await handle.result().then(
        () => null,
        (e: Error & { cause?: Error }) => e.cause?.message ?? e.message,
      );
    return {
      runId,
      status,
      temporalStatus: t,
      stage: result ? 'done' : (progress?.stage ?? 'unknown'),
      step: result ? result.transformer.step : (progress?.step ?? 0),
      totalSteps: progress?.totalSteps ?? 0,
      loss: result ? result.transformer.loss : (progress?.loss ?? null),
      restarts: result ? result.restarts : (progress?.restarts ?? 0),
      ...(await storedState(records.checkpoints, runId)),
      progress,
      quality: {
        dvae: progress?.quality?.filter((q) => q.stage === 'dvae').at(-1) ?? null,
        transformer: progress?.quality?.filter((q) => q.stage === 'transformer').at(-1) ?? null,
      },
      model: result?.model ?? null,
      failure,
    };
  } finally {
    await close();
    await records.close();
  }
}

export const cli = command({
  name: 'status',
  summary: commands.status.summary,
  positionals: '<run-id>',
  options: { json: { type: 'boolean', help: 'print the status as JSON' } },
});

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, cli);
  const runId = positionals[0];
  if (!runId || positionals.length > 1) throw usageError(cli, 'give exactly one run id');
  const s = await runStatus(runId);
  if (values.json) console.log(JSON.stringify(s, null, 2));
  else {
    console.log(`run ${s.runId}: ${s.status} (${s.temporalStatus})`);
    if (s.progress) console.log(progressLine(s.progress));
    if (s.checkpoint)
      console.log(
        `last checkpoint: ${s.checkpoint.stage} step ${s.checkpoint.step} (${s.checkpoint.parts.length} parts)`,
      );
    if (s.samples.length) console.log(`sample grids: ${s.samples.length} (latest ${s.samples.at(-1)!.key})`);
    for (const q of [s.quality.dvae, s.quality.transformer]) if (q) console.log(`quality: ${qualityLine(q)}`);
    if (s.model) console.log(`model: ${s.model.name} v${s.model.version} (${s.model.bytes} bytes)`);
    if (s.failure) console.log(`failure: ${s.failure}`);
    for (const e of s.progress?.events ?? []) console.log(`  event: ${e}`);
  }
  return s.status === 'failed' ? 1 : 0;
}
