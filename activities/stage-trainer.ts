// The trainer of a stage, on the best backend this process has.
import type { RunSpec } from '../config/index.ts';
import {
  createDvaeTrainer,
  createTransformerTrainer,
  initTfBackend,
  type Trainer,
  type TrainerOptions,
} from '../model/index.ts';
import type { StageName } from '../contract/index.ts';

export async function createStageTrainer(
  stage: StageName,
  spec: RunSpec,
  worldSize: number,
  opts: TrainerOptions = {},
): Promise<Trainer<any>> {
  await initTfBackend();
  return stage === 'dvae'
    ? createDvaeTrainer(spec.dvae, spec.train.seed, worldSize, opts)
    : createTransformerTrainer(spec.transformer, spec.dvae, spec.train.seed, worldSize, opts);
}
