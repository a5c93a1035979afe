// Base values of each preset. A user's config names a preset and overrides only what differs.
// `paper-12b` holds the paper's numbers (docs/model.md); the others scale them down for one machine.
import type { PresetName } from './spec.ts';

/** A preset before defaults are applied (schema defaults fill the rest). */
export type PresetInput = Record<string, unknown> & { preset: PresetName };

export const presets: Record<PresetName, PresetInput> = {
  // Seconds per stage on one CPU core: for tests.
  tiny: {
    preset: 'tiny',
    dataset: { kind: 'shapes', count: 256, canvas: 16, seed: 1234 },
    dvae: {
      resolution: 16,
      grid: 4,
      codebookSize: 32,
      hidden: 8,
      groups: 3,
      blocksPerGroup: 1,
      steps: 20,
      lr: 1e-3,
      lrDecaySteps: 20,
      betaWarmupSteps: 10,
      tauDecaySteps: 20,
      emaDecay: 0.9,
    },
    transformer: {
      layers: 2,
      heads: 2,
      dModel: 32,
      textLen: 12,
      vocabSize: 64,
      convKernel: 3,
      steps: 20,
      lr: 1e-3,
      warmupSteps: 5,
      plateauPatience: 10,
      plateauSmoothing: 0.8,
      emaDecay: 0.9,
    },
    rerank: {
      steps: 20,
      embedDim: 16,
      imageWidth: 4,
      imageStages: 2,
      textWidth: 16,
      textLayers: 1,
      textHeads: 2,
      lr: 3e-3,
      warmupSteps: 5,
      emaDecay: 0.9,
    },
    powersgd: { enabled: true, rank: 2, startIter: 2, minCompressionRate: 1 },
    train: {
      worldSize: 2,
      batchSize: 8,
      segmentSteps: 10,
      checkpointEvery: 5,
      seed: 0,
      heartbeatTimeout: 20,
      collectiveTimeout: 8,
      joinTimeout: 60,
      // One seen and one held-out colour–shape pair.
      samplePrompts: ['a large red circle at the center', 'a large blue circle at the center'],
      sampleImages: 2,
      qualityExamples: 16,
      qualitySamples: 4,
    },
  },
  // The demo: learns the synthetic shapes set on a 2-core machine in minutes.
  shapes: {
    preset: 'shapes',
    // Three more kinds (diamond, cross, ring) in every colour, training split only: every colour then draws
    // diagonals, curves and straight sides, so a held-out pair's edges have codes its colour was trained on.
    // With the dVAE below, held-out samples 55 % right at 1,250 transformer steps against 34 % without
    // (W = 1, 108 prompts; quality.md section 18).
    // 16,384 images: the 540 training compositions × 9 one-pixel shifts are 4,860 distinct images, of which
    // 4,096 held 2,820; a shift moves the codes of many cells at once, so a seen prompt whose shift was never
    // trained is drawn from cells that disagree. With all of them the transformer's training and validation
    // losses stay together and seen samples reach 96–97 % at 4,000–5,000 updates, where 4,096 images stall
    // at 92–95 % with the validation loss flat (quality.md section 22).
    dataset: { kind: 'shapes', count: 16_384, canvas: 32, seed: 1234, extraShapes: 3 },
    dvae: {
      resolution: 32,
      grid: 8,
      codebookSize: 128,
      hidden: 16,
      groups: 3,
      blocksPerGroup: 1,
      // 1,200 steps with the codebook started as an embedding table: colour, size and position of held-out
      // reconstructions exact (400 steps from the default init: 11 codes, 15 % right on all four). Shape
      // was the ceiling: 54–59 % with the paper's network (nearest upsampling, resblocks at 32×32) under
      // every loss/quantizer change measured, and even with no discretisation at all (decoder fed
      // softmax(logits): 56 % at 600 steps). A learned 4×4 transposed conv for each ×2 upsampling and no
      // resblocks at full resolution lift it: held-out reconstructions 66 % right on all four at 1,200 steps
      // (the paper's network: 54 %), 6 of 6 colours, 16 codes, and 22 % less CPU per step (0.132 against
      // 0.170 s). A strided-conv downsampling instead of the max-pool loses colour (17 %); lr 1e-3 is slower.
      // Seed 1: 56 %; W = 2 through PowerSGD rank 16: 54 % (also 53 % uncompressed at 600: trajectory noise).
      // The pixels along an edge weighted 31× in the reconstruction term, with the paper's β 6.6 (β 2 lost a
      // colour with it): 77 % and 92 % at seeds 0 and 1 (shape 82 % and 97 %, 6 of 6 colours; the learned
      // scale b no longer lets the decoder give up on the edges that tell a circle from a square).
      // Codebook splitting (codeSplitEvery 100, Until 1,000, Codes 16) with logitLaplaceMaxScale 0.3 kept all
      // six colours at every seed and took the demo's reconstructions to 95 %, but on the plain set its
      // colour-specific codes cost the held-out compositions (23.6 % against 55.6 %, quality.md section 17).
      // With the extra kinds above it costs nothing: held-out reconstructions 97 and 100 % right at seeds 0
      // and 1, 6 of 6 colours (W = 1), 93.5 % in the demo (W = 2; section 18). What the demo still lost were
      // small triangles drawn as circles or squares; 2,000 steps instead of 1,200 (the lr and τ schedules
      // stretched with them) fix them: 100 % against 81 % at 1,200 in the bench at W = 2, seed 0 (1,600: 97 %;
      // section 19), for 3 more minutes of the demo.
      upsample: 'transpose',
      fullResolutionBlocks: false,
      edgeWeight: 30,
      steps: 2000,
      lr: 4e-3,
      lrEnd: 1e-4,
      lrDecaySteps: 2000,
      betaWarmupSteps: 50,
      tauDecaySteps: 2000,
      emaDecay: 0.99,
      centerInput: true,
      codebookInitStd: 1,
      codeSplitEvery: 100,
      codeSplitUntil: 1000,
      codeSplitCodes: 16,
      logitLaplaceMaxScale: 0.3,
    },
    transformer: {
      layers: 4,
      heads: 4,
      dModel: 64,
      textLen: 16,
      vocabSize: 128,
      convKernel: 5,
      // Caption information grows until ~1,250 steps on the plain set; with the extra kinds (half the images
      // show a kind the evaluation never asks for) it still grows at 2,500: seen / held-out samples 69 / 55 %
      // at 1,250, 82 / 66 % at 2,000 (W = 1, section 18). With the 16,384 images above, 5,000: seen 93, 95,
      // 97, 97 % at 2,500, 3,500, 4,000, 5,000 (W = 2, 216 prompts; section 22), the plateau rule halving the
      // lr from 3,500 on.
      steps: 5000,
      lr: 2e-3,
      warmupSteps: 50,
      plateauPatience: 100,
      plateauSmoothing: 0.95,
      emaDecay: 0.95,
    },
    // Real held-out images are named right among the 324 compositions' captions 99.9 % of the time from 300
    // steps on (`dalle bench rerank`), but generated candidates need more: of 16 candidates per held-out
    // prompt of one demo model, the kept one was right for 71 % of prompts at 300 steps, 82 % at 900, 87 % at
    // 1,500, 89 % at 2,000 and 3,000, where one of the 16 was right for 96 % (docs/experiments/quality.md,
    // section 12). ~0.07 s a step at W = 1 here.
    rerank: {
      steps: 2000,
      embedDim: 64,
      imageWidth: 16,
      imageStages: 3,
      textWidth: 64,
      textLayers: 0,
      lr: 2e-3,
      warmupSteps: 30,
      emaDecay: 0.95,
    },
    // Rank 16: at W = 2 and equal steps the dVAE matches the uncompressed run (600 steps: held-out
    // reconstructions 56 % right, 6/6 colours, against 57 % and 6/6), where rank 4 merged two colours (32 %,
    // 5/6) and cost the transformer a third of its held-out caption information. Under the default
    // minCompressionRate 2 this compresses the 64×256 MLP matrices (rank 16 of 64) and the dVAE's largest
    // kernel, and sends the 64×64 ones whole: 56 % of the transformer's gradient bytes saved instead of 82 %.
    powersgd: { enabled: true, rank: 16, startIter: 10 },
    train: {
      worldSize: 2,
      batchSize: 32,
      segmentSteps: 100,
      checkpointEvery: 50,
      seed: 0,
      // Three seen colour–shape pairs, then three held-out ones (never in a training image). Two images each:
      // a grid's cost grows with its rows, and 12 keep it near 3 % of the transformer stage here.
      sampleImages: 2,
      samplePrompts: [
        'a large red circle at the center',
        'a small green square at the top left',
        'a large yellow triangle at the bottom',
        'a large blue circle at the center',
        'a large red square at the center',
        'a small green triangle at the top right',
      ],
    },
  },
  // CUB-200-2011 birds with the Reed et al. captions: a single-GPU-node scale.
  cub: {
    preset: 'cub',
    dataset: { kind: 'cub', path: './data/CUB_200_2011' },
    dvae: {
      resolution: 128,
      grid: 16,
      codebookSize: 1024,
      hidden: 128,
      groups: 4,
      blocksPerGroup: 2,
      steps: 100_000,
      lrDecaySteps: 100_000,
      tauDecaySteps: 50_000,
    },
    transformer: {
      layers: 16,
      heads: 16,
      dModel: 1024,
      textLen: 64,
      vocabSize: 4096,
      steps: 100_000,
      warmupSteps: 2_000,
    },
    rerank: {
      steps: 20_000,
      embedDim: 256,
      imageWidth: 32,
      imageStages: 4,
      textWidth: 256,
      textLayers: 4,
      textHeads: 4,
      lr: 5e-4,
      warmupSteps: 1_000,
      emaDecay: 0.999,
    },
    powersgd: { enabled: true, rank: 32 },
    train: {
      worldSize: 8,
      batchSize: 256,
      segmentSteps: 2_000,
      checkpointEvery: 500,
      seed: 0,
      samplePrompts: [
        'this bird has a red crown, a short black beak and white wings',
        'a small yellow bird with black wings and a pointed beak',
        'a large bird with a long neck and grey feathers',
      ],
    },
  },
  // The paper: 12B parameters, 1024 V100s. Config only: counted, never allocated here.
  'paper-12b': {
    preset: 'paper-12b',
    dataset: { kind: 'webdataset', path: './data/laion-like-shards' },
    dvae: {
      resolution: 256,
      grid: 32,
      codebookSize: 8192,
      hidden: 256,
      groups: 4,
      blocksPerGroup: 2,
      steps: 3_000_000,
      lr: 1e-4,
      lrEnd: 1.25e-6,
      lrDecaySteps: 1_200_000,
      betaMax: 6.6,
      betaWarmupSteps: 5_000,
      tauStart: 1,
      tauEnd: 1 / 16,
      tauDecaySteps: 150_000,
      adamBeta1: 0.9,
      adamBeta2: 0.999,
      adamEps: 1e-8,
      weightDecay: 1e-4,
      emaDecay: 0.999,
      logitLaplaceEps: 0.1,
    },
    transformer: {
      layers: 64,
      heads: 62,
      dModel: 3968,
      textLen: 256,
      vocabSize: 16_384,
      convKernel: 11,
      steps: 430_000,
      lr: 4.5e-4,
      warmupSteps: 5_000,
      plateauHalvings: 5,
      adamBeta1: 0.9,
      adamBeta2: 0.96,
      adamEps: 1e-8,
      weightDecay: 4.5e-2,
      gradClip: 4,
      emaDecay: 0.99,
      bpeDropout: 0.1,
      textLossWeight: 1 / 8,
      imageLossWeight: 7 / 8,
    },
    // The paper reranked with CLIP, trained apart from DALL-E on its own 400M pairs: no third stage here.
    rerank: { steps: 0 },
    powersgd: { enabled: true, rank: 896, wire: 'fp16', warmStart: false, epsilon: 1e-6 },
    train: {
      worldSize: 1024,
      batchSize: 1024,
      segmentSteps: 5_000,
      checkpointEvery: 1_000,
      seed: 0,
      // Captions from the paper's figures.
      samplePrompts: [
        'an armchair in the shape of an avocado',
        'a tapir made of accordion. a tapir with the texture of an accordion.',
        'an illustration of a baby daikon radish in a tutu walking a dog',
        'a store front that has the word openai written on it',
      ],
    },
  },
};
