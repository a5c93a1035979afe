// Base values of each preset. A user's config names a preset and overrides only what differs.
// `paper-12b` holds the paper's numbers (../PAPER.md); the others scale them down for one machine.
import type { PresetName } from './spec.ts';

/** A preset before defaults are applied (schema defaults fill the rest). */
export type PresetInput = Record<string, unknown> & { preset: PresetName };

export const presets: Record<PresetName, PresetInput> = {
  // Seconds per stage on one CPU core: for tests.
  tiny: {
    preset: 'tiny',
    dataset: { kind: 'shapes', count: 256, canvas: 16, seed: 1234 },
    dvae: {
      resolution: 16, grid: 4, codebookSize: 32, hidden: 8, groups: 3, blocksPerGroup: 1, steps: 20,
      lr: 1e-3, lrDecaySteps: 20, betaWarmupSteps: 10, tauDecaySteps: 20, emaDecay: 0.9,
    },
    transformer: {
      layers: 2, heads: 2, dModel: 32, textLen: 12, vocabSize: 64, convKernel: 3, steps: 20,
      lr: 1e-3, warmupSteps: 5, plateauPatience: 10, plateauSmoothing: 0.8, emaDecay: 0.9,
    },
    powersgd: { enabled: true, rank: 2, startIter: 2, minCompressionRate: 1 },
    train: { worldSize: 2, batchSize: 8, segmentSteps: 10, checkpointEvery: 5, seed: 0, heartbeatTimeout: 20, collectiveTimeout: 8, joinTimeout: 60 },
  },
  // The demo: learns the synthetic shapes set on a 2-core machine in minutes.
  shapes: {
    preset: 'shapes',
    dataset: { kind: 'shapes', count: 4096, canvas: 32, seed: 1234 },
    dvae: {
      resolution: 32, grid: 8, codebookSize: 128, hidden: 16, groups: 3, blocksPerGroup: 1, steps: 400,
      lr: 4e-3, lrEnd: 1e-4, lrDecaySteps: 400, betaMax: 2, betaWarmupSteps: 50, tauDecaySteps: 400,
      emaDecay: 0.99, centerInput: true,
    },
    transformer: {
      layers: 4, heads: 4, dModel: 64, textLen: 16, vocabSize: 128, convKernel: 5, steps: 300,
      lr: 2e-3, warmupSteps: 50, plateauPatience: 100, plateauSmoothing: 0.95, emaDecay: 0.95,
    },
    powersgd: { enabled: true, rank: 4, startIter: 10 },
    train: { worldSize: 2, batchSize: 32, segmentSteps: 100, checkpointEvery: 50, seed: 0 },
  },
  // CUB-200-2011 birds with the Reed et al. captions: a single-GPU-node scale.
  cub: {
    preset: 'cub',
    dataset: { kind: 'cub', path: './data/CUB_200_2011' },
    dvae: {
      resolution: 128, grid: 16, codebookSize: 1024, hidden: 128, groups: 4, blocksPerGroup: 2, steps: 100_000,
      lrDecaySteps: 100_000, tauDecaySteps: 50_000,
    },
    transformer: {
      layers: 16, heads: 16, dModel: 1024, textLen: 64, vocabSize: 4096, steps: 100_000, warmupSteps: 2_000,
    },
    powersgd: { enabled: true, rank: 32 },
    train: { worldSize: 8, batchSize: 256, segmentSteps: 2_000, checkpointEvery: 500, seed: 0 },
  },
  // The paper: 12B parameters, 1024 V100s. Config only: counted, never allocated here.
  'paper-12b': {
    preset: 'paper-12b',
    dataset: { kind: 'webdataset', path: './data/laion-like-shards' },
    dvae: {
      resolution: 256, grid: 32, codebookSize: 8192, hidden: 256, groups: 4, blocksPerGroup: 2, steps: 3_000_000,
      lr: 1e-4, lrEnd: 1.25e-6, lrDecaySteps: 1_200_000, betaMax: 6.6, betaWarmupSteps: 5_000,
      tauStart: 1, tauEnd: 1 / 16, tauDecaySteps: 150_000, adamBeta1: 0.9, adamBeta2: 0.999, adamEps: 1e-8,
      weightDecay: 1e-4, emaDecay: 0.999, logitLaplaceEps: 0.1,
    },
    transformer: {
      layers: 64, heads: 62, dModel: 3968, textLen: 256, vocabSize: 16_384, convKernel: 11, steps: 430_000,
      lr: 4.5e-4, warmupSteps: 5_000, plateauHalvings: 5, adamBeta1: 0.9, adamBeta2: 0.96, adamEps: 1e-8,
      weightDecay: 4.5e-2, gradClip: 4, emaDecay: 0.99, bpeDropout: 0.1, textLossWeight: 1 / 8,
      imageLossWeight: 7 / 8,
    },
    powersgd: { enabled: true, rank: 896, wire: 'fp16', warmStart: false, epsilon: 1e-6 },
    train: { worldSize: 1024, batchSize: 1024, segmentSteps: 5_000, checkpointEvery: 1_000, seed: 0 },
  },
};
