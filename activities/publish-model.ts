// publishModel: the EMA weights of every stage's final checkpoint (dVAE, transformer, and the reranker when
// the spec trains one) + the tokenizer + the spec, as one bundle in the model store under the spec's model
// name. Idempotent: a retry after a publish that
// succeeded returns the version already published for this run.
import type { RunSpec } from '../config/index.ts';
import { encodeState, initTfBackend } from '../model/index.ts';
import { encodeBundle, sha256, type CheckpointStore, type ModelStore } from '../store/index.ts';
import { emaParams, stageParamSpecs } from './ema-params.ts';
import { DATA_STAGE, DATA_STEP } from './encoded.ts';
import { stageSteps, type PublishResult, type StageName } from '../contract/index.ts';

async function emaWeights(
  checkpoints: CheckpointStore,
  runId: string,
  stage: StageName,
  spec: RunSpec,
): Promise<Uint8Array> {
  const m = await checkpoints.resolve(runId, stage);
  if (!m) throw new Error(`run ${runId} has no committed ${stage} checkpoint to publish`);
  const arrays = await emaParams(checkpoints, m, stage, spec);
  return encodeState(
    { stage, step: m.step, runId },
    stageParamSpecs(stage, spec).map((p, i) => [p.name, arrays[i]!] as const),
  );
}

export async function publishModel(
  deps: { checkpoints: CheckpointStore; models: ModelStore },
  input: { runId: string; spec: RunSpec },
): Promise<PublishResult> {
  const { runId, spec } = input;
  await initTfBackend();
  const dataManifest = await deps.checkpoints.manifestAt(runId, DATA_STAGE, DATA_STEP);
  if (!dataManifest) throw new Error(`run ${runId} has no encoded dataset (tokenizer)`);
  const tokenizer = JSON.parse(
    new TextDecoder().decode(await deps.checkpoints.loadPart(dataManifest, 'tokenizer')),
  );
  const bundle = encodeBundle({
    spec,
    tokenizer,
    dvae: await emaWeights(deps.checkpoints, runId, 'dvae', spec),
    transformer: await emaWeights(deps.checkpoints, runId, 'transformer', spec),
    ...(stageSteps(spec, 'rerank') > 0
      ? { rerank: await emaWeights(deps.checkpoints, runId, 'rerank', spec) }
      : {}),
    meta: {
      runId,
      preset: spec.preset,
      dvaeSteps: spec.dvae.steps,
      transformerSteps: spec.transformer.steps,
      rerankSteps: stageSteps(spec, 'rerank'),
    },
  });
  const hash = sha256(bundle);
  const latest = await deps.models.latest(spec.modelName);
  if (latest && latest.sha256 === hash && latest.meta.runId === runId) {
    return { name: latest.name, version: latest.version, sha256: latest.sha256, bytes: latest.bytes };
  }
  const v = await deps.models.publish(spec.modelName, bundle, { runId, preset: spec.preset });
  return { name: v.name, version: v.version, sha256: v.sha256, bytes: v.bytes };
}
