// A rank's state at the start of a segment, from the committed checkpoint it starts at: the model and its
// optimizer (the `params` part, written once), and this rank's PowerSGD error buffers. The same world
// size loads the rank's own part exactly (so a resumed run is bit-identical to one that never stopped); a
// changed world size re-shards every old rank's error buffers into this rank's (their mean: see
// collective/powersgd-reshard.ts for why a reset would be wrong).
import { reshardPowerSgdState, type PowerSgd } from '../collective/index.ts';
import type { Trainer } from '../model/index.ts';
import { specHash } from '../config/index.ts';
import { CheckpointStore, type CheckpointManifest } from '../store/index.ts';
import type { TrainShardInput } from '../contract/index.ts';

/** Names of the PowerSGD parts in a manifest, in rank order. */
export function rankParts(manifest: CheckpointManifest): string[] {
  return manifest.parts
    .map((p) => p.name)
    .filter((n) => /^rank\d+$/.test(n))
    .sort((a, b) => Number(a.slice(4)) - Number(b.slice(4)));
}

export interface RestoredState {
  /** The manifest the segment starts from (undefined: a fresh start at step 0). */
  manifest?: CheckpointManifest;
  /** How this rank's PowerSGD state was obtained. */
  powersgd: 'fresh' | 'exact' | 'resharded';
}

export async function restoreRankState(
  checkpoints: CheckpointStore,
  input: TrainShardInput,
  trainer: Trainer<unknown>,
  psgd: PowerSgd,
): Promise<RestoredState> {
  const { runId, stage, rank, worldSize, fromStep } = input;
  if (fromStep === 0) return { powersgd: 'fresh' };
  const manifest = await checkpoints.manifestAt(runId, stage, fromStep);
  if (!manifest) throw new Error(`committed checkpoint ${runId}/${stage}/${fromStep} has no manifest`);
  CheckpointStore.checkSpec(manifest, specHash(input.spec)); // the same run id under another spec: fatal
  trainer.loadState(await checkpoints.loadPart(manifest, 'params'));
  const parts = rankParts(manifest);
  if (manifest.meta.worldSize === worldSize && parts.includes(`rank${rank}`)) {
    psgd.loadState(await checkpoints.loadPart(manifest, `rank${rank}`));
    return { manifest, powersgd: 'exact' };
  }
  const saved = [];
  for (const name of parts) saved.push({ bytes: await checkpoints.loadPart(manifest, name) });
  const numel = new Map(trainer.paramSpecs().map((s) => [s.name, s.shape.reduce((a, b) => a * b, 1)]));
  psgd.loadState(reshardPowerSgdState(saved, { psgd, numel }));
  return { manifest, powersgd: 'resharded' };
}
