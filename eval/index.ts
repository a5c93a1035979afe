// The evaluation library: what `dalle eval`, `dalle demo`, training's checkpoint measurements, the benchmarks
// and the tests share.
export * from './shapes-eval.ts';
export * from './generators.ts';
export * from './bundle-dvae.ts';
export * from './caption-scores.ts';
export * from './bundle-reranker.ts';
export * from './sampling-curve.ts';
export * from './caption-information.ts';
export * from './dvae-quality.ts';
export * from './sample-accuracy.ts';
export * from './validation.ts';
export * from './quality-probe.ts';
export * from './quality-line.ts';
export * from './reranker-attributes.ts';
export * from './code-usage.ts';
