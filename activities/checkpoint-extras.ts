// Rank 0's extras of a checkpoint: the stage's curves (every step's metrics since the stage began) and a
// sample grid drawn from the EMA weights (gathered from the shards in the sharded layout). A resumed segment continues the curves of its
// checkpoint. Neither ever costs the checkpoint: a grid that fails to draw, or curves that cannot be read,
// are logged and left out or started afresh.
import {
  CURVES_PART,
  RunCurves,
  SAMPLES_PART,
  type CheckpointManifest,
  type CheckpointStore,
  type PartRef,
} from '../store/index.ts';
import type { TrainShardInput } from '../contract/index.ts';
import { renderCheckpointSamples } from './checkpoint-samples.ts';

export interface CheckpointExtras {
  parts: PartRef[];
  meta: Record<string, unknown>;
}

type Log = (msg: string) => void;

/** The curves a segment of rank 0 starts from: its checkpoint's, or none. */
export async function loadCurves(
  checkpoints: CheckpointStore,
  manifest: CheckpointManifest | undefined,
  input: TrainShardInput,
  log: Log,
): Promise<RunCurves> {
  const { runId, stage, fromStep } = input;
  if (!manifest?.parts.some((p) => p.name === CURVES_PART)) return new RunCurves();
  return checkpoints
    .loadPart(manifest, CURVES_PART)
    .then((b) => RunCurves.decode(b, fromStep))
    .catch((e: unknown) => {
      log(`curves of ${runId}/${stage}/${fromStep} unreadable, starting them afresh: ${String(e)}`);
      return new RunCurves();
    });
}

/** Stores the curves and the sample grid of checkpoint `step`; the grid's drawing time goes into the
 *  curves (`sampleSeconds` at that step). */
export async function rank0Extras(
  checkpoints: CheckpointStore,
  input: TrainShardInput,
  step: number,
  ema: Float32Array[],
  curves: RunCurves,
  log: Log,
): Promise<CheckpointExtras> {
  const { runId, stage, spec } = input;
  const grid = await renderCheckpointSamples({ runId, stage, spec, ema: () => ema, checkpoints }).catch(
    (e: unknown) => void log(`no sample grid for ${runId}/${stage}/${step}: ${String(e)}`),
  );
  if (grid) curves.annotate(step, 'sampleSeconds', grid.meta.ms / 1000);
  const parts = [await checkpoints.putPart(runId, stage, step, CURVES_PART, curves.encode())];
  if (!grid) return { parts, meta: {} };
  parts.push(await checkpoints.putPart(runId, stage, step, SAMPLES_PART, grid.png));
  return { parts, meta: { samples: grid.meta } };
}
