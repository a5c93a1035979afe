// The trainer of a stage, on the best backend this process has.
import type { RunSpec } from '../config/index.ts';
import { initBackend } from '../model/backend.ts';
import { createDvaeTrainer } from '../model/dvae-trainer.ts';
import { createTransformerTrainer } from '../model/transformer-trainer.ts';
import type { Trainer } from '../model/trainer.ts';
import type { StageName } from '../contract/index.ts';

export async function createStageTrainer(
  stage: StageName,
  spec: RunSpec,
  worldSize: number,
): Promise<Trainer<any>> {
  await initBackend();
  return stage === 'dvae'
    ? createDvaeTrainer(spec.dvae, spec.train.seed, worldSize)
    : createTransformerTrainer(spec.transformer, spec.dvae, spec.train.seed, worldSize);
}
