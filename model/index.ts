// The model's public surface: what training (activities/), serving (services/sampler/), evaluation,
// benchmarks and tests use. Other folders import the model only through this file; everything not
// exported here (kernels, masks, schedules, AdamW, the Gumbel and logit-Laplace helpers) is internal.
export * from './tf-backend.ts';
export * from './trainer.ts';
export * from './dvae.ts';
export * from './dvae-trainer.ts';
export * from './transformer.ts';
export * from './transformer-trainer.ts';
export * from './reranker.ts';
export * from './reranker-trainer.ts';
export * from './sampling.ts';
export * from './sampling-reference.ts';
export * from './state-io.ts';
export * from './sharded-adamw.ts';
