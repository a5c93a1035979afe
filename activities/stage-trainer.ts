// The trainer of a stage, on the best backend this process has.
import type { RunSpec } from '../config/index.ts';
import {
  createDvaeTrainer,
  createRerankTrainer,
  createTransformerTrainer,
  initTfBackend,
  type Trainer,
  type TrainerOptions,
} from '../model/index.ts';
import type { StageName } from '../contract/index.ts';
import { dvaeProbe } from './batches.ts';

export async function createStageTrainer(
  stage: StageName,
  spec: RunSpec,
  worldSize: number,
  opts: TrainerOptions = {},
): Promise<Trainer<any>> {
  await initTfBackend();
  const seed = spec.train.seed;
  if (stage === 'dvae')
    return createDvaeTrainer(spec.dvae, seed, worldSize, { ...opts, probe: await dvaeProbe(spec) });
  if (stage === 'transformer')
    return createTransformerTrainer(spec.transformer, spec.dvae, seed, worldSize, opts);
  return createRerankTrainer(spec.rerank, spec.transformer, spec.dvae, seed, worldSize, opts);
}
