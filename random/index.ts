// The project's only source of randomness, used by data/, model/ and collective/ (and the evaluation).
// Every generator here is counter-based: a number is a pure function of its key (seed, step, rank, …), so
// exact resume needs no generator state in checkpoints. Three word sources, each keyed the way its user
// needs and each pinned by random.test.ts (their numbers are in every checkpoint and recorded run):
//   philox.ts        Philox4x32-10 over (seed, stream, step, rank): model init, Gumbel noise, sampling
//   keyed-stream.ts  sfc32 seeded by a hash of any key parts: data order, augmentation, captions, BPE dropout
//   lowbias.ts       lowbias32 hash of (seed, step, stream, index): PowerSGD's shared Gaussian Q
// and one set of distributions over their words (distributions.ts).
export * from './key-error.ts';
export * from './distributions.ts';
export * from './philox.ts';
export * from './keyed-stream.ts';
export * from './lowbias.ts';
