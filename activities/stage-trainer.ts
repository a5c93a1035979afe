// The trainer of a stage, on the best backend this process has.
import type { RunSpec } from '../config/index.ts';
import {
  createDvaeTrainer,
  createRerankTrainer,
  createTransformerTrainer,
  initTfBackend,
  type Trainer,
} from '../model/index.ts';
import type { StageName } from '../contract/index.ts';

export async function createStageTrainer(
  stage: StageName,
  spec: RunSpec,
  worldSize: number,
): Promise<Trainer<any>> {
  await initTfBackend();
  const seed = spec.train.seed;
  if (stage === 'dvae') return createDvaeTrainer(spec.dvae, seed, worldSize);
  if (stage === 'transformer') return createTransformerTrainer(spec.transformer, spec.dvae, seed, worldSize);
  return createRerankTrainer(spec.rerank, spec.transformer, spec.dvae, seed, worldSize);
}
