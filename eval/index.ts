// The evaluation library: what `dalle eval`, `dalle demo` and the tests share.
export * from './shapes-eval.ts';
export * from './generators.ts';
export * from './bundle-dvae.ts';
export * from './caption-scores.ts';
export * from './bundle-reranker.ts';
export * from './sampling-curve.ts';
