// The EMA weights of a committed stage checkpoint, whichever layout wrote it: the flat layout keeps them
// in the trainer's state (`params`), the sharded one in its optimizer shards (`opt<l>`), assembled here.
// What publishing the model and encoding the dataset use.
import type { RunSpec } from '../config/index.ts';
import {
  assembleEma,
  dvaeParamSpecs,
  rerankerDims,
  rerankerParamSpecs,
  transformerParamSpecs,
  type ParamSpec,
} from '../model/index.ts';
import type { CheckpointManifest, CheckpointStore } from '../store/index.ts';
import type { StageName } from '../contract/index.ts';
import { createStageTrainer } from './stage-trainer.ts';

export function stageParamSpecs(stage: StageName, spec: RunSpec): ParamSpec[] {
  if (stage === 'dvae') return dvaeParamSpecs(spec.dvae);
  if (stage === 'transformer') return transformerParamSpecs(spec.transformer, spec.dvae);
  return rerankerParamSpecs(rerankerDims(spec.rerank, spec.transformer, spec.dvae));
}

/** EMA parameters in the stage's `paramSpecs` order. */
export async function emaParams(
  checkpoints: CheckpointStore,
  manifest: CheckpointManifest,
  stage: StageName,
  spec: RunSpec,
): Promise<Float32Array[]> {
  if ((manifest.meta.layout as { kind?: string } | undefined)?.kind === 'host') {
    const names = manifest.parts.map((p) => p.name).filter((n) => /^opt\d+$/.test(n));
    const parts = await Promise.all(names.map((n) => checkpoints.loadPart(manifest, n)));
    return assembleEma(
      parts,
      stageParamSpecs(stage, spec).map((s) => s.shape.reduce((a, b) => a * b, 1)),
    );
  }
  const trainer = await createStageTrainer(stage, spec, 1);
  try {
    trainer.loadState(await checkpoints.loadPart(manifest, 'params'));
    return trainer.exportParams('ema');
  } finally {
    trainer.dispose();
  }
}
