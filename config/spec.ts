// The run spec: every knob of a training run, validated with zod at every boundary (CLI, workflow input,
// checkpoint manifest). Schemas are strict: an unknown key is an error, never silently ignored.
// Presets (./presets.ts) give base values; a user's file overrides only what differs.
import { z } from 'zod';

const positiveInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const prob = z.number().min(0).max(1);
// Upper bounds: far above the paper's 12B model (a typo or a forged spec is an error naming the field,
// never a model of 10^16 parameters or a loop of 2^53 steps).
const STEPS_MAX = 100_000_000;
const SCHEDULE_MAX = 1_000_000_000;
const SECONDS_MAX = 7 * 24 * 3600;
const upTo = (max: number) => positiveInt.max(max);

export const ShapesDatasetConfig = z.strictObject({
  kind: z.literal('shapes'),
  /** Images in the training split (held-out compositions are never among them). */
  count: upTo(1_000_000_000).default(4096),
  /** Canvas side in pixels; must equal dvae.resolution unless preprocessing rescales. */
  canvas: upTo(2048).default(32),
  /** Seed of the synthetic generator (independent of train.seed so data is stable across runs). */
  seed: nonNegInt.max(0xffffffff).default(1234),
  /** Zero-shot levers (data/shapes-scenes.ts); the held-out pairs stay out of every training image and
   *  caption whatever they are. Training images may also use this many extra colours (0–6)… */
  extraColors: nonNegInt.max(6).default(0),
  /** … this many extra shape kinds (0–3: diamond, cross, ring)… */
  extraShapes: nonNegInt.max(3).default(0),
  /** … and 1..maxShapes shapes each, every one with its own colour, kind, size and position, all named by
   *  the caption (needs a textLen that holds them: about 12 tokens per shape). */
  maxShapes: positiveInt.max(3).default(1),
});

export const FolderDatasetConfig = z.strictObject({
  kind: z.enum(['folder', 'webdataset', 'cub', 'coco']),
  /** Folder of images + .txt captions, a folder of .tar shards, the CUB root, or COCO root. */
  path: z.string().min(1),
  /** COCO: captions JSON relative to path (e.g. annotations/captions_train2017.json). */
  annotations: z.string().optional(),
  /** COCO: image folder relative to path (e.g. train2017). */
  images: z.string().optional(),
  /** Use at most this many samples (0 = all). */
  limit: nonNegInt.max(1_000_000_000_000).default(0),
  /** CUB: folder of the Reed et al. `text_c10` captions relative to path (default: searched next to path). */
  captions: z.string().optional(),
  /** folder/webdataset (and coco with `annotations` set): fraction of items, chosen by a hash of their key,
   *  that form the `heldout` split instead of `train`. CUB uses train_test_split.txt, COCO val2017. */
  heldoutFraction: prob.default(0),
  /** Open-time image check: 'decode' every image fully (catches truncated files) or read 'header's only (fast). */
  verify: z.enum(['decode', 'header']).default('decode'),
});

export const DatasetConfig = z.discriminatedUnion('kind', [ShapesDatasetConfig, FolderDatasetConfig]);
export type DatasetConfig = z.infer<typeof DatasetConfig>;

export const DvaeConfig = z.strictObject({
  /** Input image side in pixels (paper: 256). */
  resolution: upTo(2048),
  /** Token grid side (paper: 32); must be resolution / 2^(groups-1). */
  grid: upTo(256),
  /** Codebook size K (paper: 8192). */
  codebookSize: upTo(65_536),
  /** Base hidden width n_hid (paper: 256); group g uses (g+1)·hidden (encoder). */
  hidden: upTo(4096),
  /** Resblock groups (paper: 4), max-pool / upsample between them. */
  groups: upTo(8),
  /** Resblocks per group (paper: 2). */
  blocksPerGroup: upTo(16),
  /** Training updates of stage 1. */
  steps: upTo(STEPS_MAX),
  /** Peak learning rate (paper: 1e-4), cosine-decayed to lrEnd over lrDecaySteps. */
  lr: z.number().positive().default(1e-4),
  lrEnd: z.number().nonnegative().default(1.25e-6),
  lrDecaySteps: upTo(SCHEDULE_MAX).default(1_200_000),
  /** Linear warm-up of the first updates to lr (update i runs at lr·(i+1)/n), the cosine decay unchanged
   *  underneath; absent or 0: none (the paper). Optional without a default, so specs written before it
   *  keep their hash. */
  lrWarmupSteps: nonNegInt.max(SCHEDULE_MAX).optional(),
  /** KL weight β: cosine 0 → betaMax over betaWarmupSteps (paper: 6.6 over 5,000). */
  betaMax: z.number().nonnegative().default(6.6),
  betaWarmupSteps: upTo(SCHEDULE_MAX).default(5_000),
  /** Gumbel-softmax temperature τ: cosine tauStart → tauEnd over tauDecaySteps (paper: 1 → 1/16 over 150,000). */
  tauStart: z.number().positive().default(1),
  tauEnd: z
    .number()
    .positive()
    .default(1 / 16),
  tauDecaySteps: upTo(SCHEDULE_MAX).default(150_000),
  /** AdamW (paper: 0.9, 0.999, 1e-8, weight decay 1e-4). */
  adamBeta1: prob.default(0.9),
  adamBeta2: prob.default(0.999),
  adamEps: z.number().positive().default(1e-8),
  weightDecay: z.number().nonnegative().default(1e-4),
  /** Parameter EMA decay (paper: 0.999). */
  emaDecay: prob.default(0.999),
  /** Global gradient-norm clip; 0: none (the paper clips only stage 2). */
  gradClip: z.number().nonnegative().default(0),
  /** ε of the logit-Laplace pixel map φ (paper: 0.1). */
  logitLaplaceEps: z.number().positive().max(0.5).default(0.1),
  /** Smallest scale b the logit-Laplace may predict (0: none, the paper). Pixels are 8-bit: a density
   *  sharper than their quantization step rewards ever more precise copies of flat regions (a white
   *  background) without bound, and that term can drown the few pixels that carry colour and shape. */
  logitLaplaceMinScale: z.number().nonnegative().default(0),
  /** Largest scale b (0: none, the paper). A decoder unsure of a pixel may widen b there and pay only
   *  ln b for getting it wrong; capped, a wrong edge pixel costs |logit error| / b, so the few pixels that
   *  tell a circle from a square weigh as much as they matter. */
  logitLaplaceMaxScale: z.number().nonnegative().default(0),
  /** Extra weight w of the reconstruction term at pixels that have another colour within their 3×3
   *  neighbourhood (edges): those pixels count 1 + w times. 0: every pixel counts once (the paper). On flat
   *  synthetic images the few edge pixels are what tells one shape from another, and the learned scale b
   *  lets the decoder give up on them; the weight keeps their share of the gradient. */
  edgeWeight: z.number().nonnegative().default(0),
  /** Weight of a per-cell colour term (0: none, the paper): a 1×1 head predicts each cell's mean colour
   *  from its code alone, so every code must say its cell's colour instead of leaving it to the decoder's
   *  view of the neighbours (gumbel and continuous quantizers). */
  cellColorWeight: z.number().nonnegative().default(0),
  /** Feed the encoder 2φ(x)−1 instead of φ(x) (the official code feeds φ(x): false). On flat white
   *  backgrounds the uncentred input's constant term makes every cell pick one code early in training. */
  centerInput: z.boolean().default(false),
  /** Straight-through Gumbel-softmax: the decoder sees the one-hot argmax of the relaxed sample (what it
   *  sees at inference) while gradients flow through the relaxation. The paper trains on the relaxation
   *  itself: false. */
  straightThrough: z.boolean().default(false),
  /** Weight w of a codebook-diversity term added to the loss: w·(log K − H(q̄)) nats, where q̄ is the
   *  encoder's softmax averaged over every cell of the rank's batch (wav2vec 2.0's diversity loss).
   *  Counters codebook collapse without pushing each cell towards uniform. Paper: 0 (none). */
  diversityWeight: z.number().nonnegative().default(0),
  /** 0: the encoder's logits are a plain 1×1 convolution (the paper). s > 0: they are s times the cosine
   *  between each cell's features and each code's weight vector (l2-normalized codes, as in ViT-VQGAN):
   *  bounded logits keep the Gumbel noise able to try other codes, so the codebook does not collapse to
   *  the few codes that won early. */
  codeLogitScale: z.number().nonnegative().default(0),
  /** Initial standard deviation of the codebook (decoder.input's rows): 0 keeps the convolution init
   *  N(0, 1/K) (the paper's), under which every code starts decoding to nearly the same thing; 1 is an
   *  embedding table's N(0, 1) (dalle-pytorch's nn.Embedding), codes distinct from the first step. */
  codebookInitStd: z.number().nonnegative().default(0),
  /** How the decoder doubles its resolution between groups: 'nearest' (the paper) repeats each pixel, so a
   *  code can only paint its whole cell; 'shuffle' is a 1×1 conv to 4× the channels whose slices become
   *  the 2×2 sub-pixels (pixel shuffle, started as nearest), so a code can draw an edge inside its cell. */
  upsample: z.enum(['nearest', 'shuffle', 'transpose']).default('nearest'),
  /** How the encoder halves its resolution between groups: 'maxpool' (the paper), a 2×2 max-pool, or
   *  'conv', a learned 4×4 convolution with stride 2 (dalle-pytorch's DiscreteVAE). Likewise upsample
   *  'transpose' is a learned 4×4 transposed convolution with stride 2. */
  downsample: z.enum(['maxpool', 'conv']).default('maxpool'),
  /** false: no resblocks in the full-resolution groups (the encoder's first, the decoder's last), so the
   *  network's depth sits at the lower resolutions where it is cheap; with nearest upsampling the decoder
   *  would then paint whole cells, so pair it with upsample 'shuffle' or 'transpose'. Paper: true. */
  fullResolutionBlocks: z.boolean().default(true),
  /** Gain on every resblock's residual branch: 0 is the paper's 1/n_layers² (n_layers = groups ·
   *  blocksPerGroup), which keeps a deep network near the identity at initialisation; in a shallow one it
   *  is 1/9 (3 groups of 1 block), so Adam needs many steps to grow the branches that draw detail. */
  resblockGain: z.number().nonnegative().default(0),
  /** How a cell becomes a code: 'gumbel', the paper's Gumbel-softmax relaxation of a categorical
   *  posterior (with the KL term, τ and β schedules), or 'vq', the nearest vector of a learned codebook
   *  (VQ-VAE: codebook and commitment terms, the decoder's gradient passed straight through to the
   *  encoder; β, τ and the Gumbel-only options are then unused). The codebook is decoder.input's kernel
   *  either way, so tokens, encode and decode mean the same thing. 'continuous' is a diagnostic, not a
   *  tokenizer: the decoder is fed softmax(logits), with no noise and no KL term, so each cell passes a
   *  point of the K-simplex (a continuous bottleneck; the raw logits, unbounded, diverge): what the
   *  architecture can draw from its grid before discretisation. Only `Dvae.reconstructRelaxed` is
   *  meaningful for it. */
  quantizer: z.enum(['gumbel', 'vq', 'continuous']).default('gumbel'),
  /** vq: weight of the commitment term ‖z_e − sg(e)‖² (VQ-VAE: 0.25). */
  commitmentWeight: z.number().nonnegative().default(0.25),
  /** Dead-code restarts (model/code-restart.ts; needs straightThrough): every this many updates, codes
   *  no cell used during the window restart as copies of the busiest ones. 0: never (the paper). */
  codeRestartEvery: nonNegInt.default(0),
  /** … up to this update (restarts late in training would leave the EMA weights no time to follow). */
  codeRestartUntil: nonNegInt.default(0),
  /** Codebook splitting (model/code-split.ts; the gumbel quantizer with plain logits): every this many
   *  updates the codes whose cells differ most in their pixels, on a fixed probe of training images, are
   *  each split in two along what tells their cells apart, into codes the probe does not use. Absent or 0:
   *  never (the paper). Optional without defaults, so specs written before it keep their hash. */
  codeSplitEvery: nonNegInt.max(SCHEDULE_MAX).optional(),
  /** … before this update (absent: codeSplitEvery · 4), and never in the stage's last codeSplitEvery updates … */
  codeSplitUntil: nonNegInt.max(SCHEDULE_MAX).optional(),
  /** … at most this many codes a time (absent: 4) … */
  codeSplitCodes: upTo(4096).optional(),
  /** … judged on this many training images (the first of step 0's order; absent: 256). */
  codeSplitProbe: upTo(4096).optional(),
});
export type DvaeConfig = z.infer<typeof DvaeConfig>;

export const TransformerConfig = z.strictObject({
  /** Decoder layers (12B: 64). */
  layers: upTo(512),
  /** Attention heads (12B: 62). */
  heads: upTo(512),
  /** Model width (12B: 3968 = 62 × 64); must be divisible by heads. */
  dModel: upTo(32_768),
  /** Text positions (12B: 256). */
  textLen: upTo(4096),
  /** BPE text vocabulary (12B: 16,384). */
  vocabSize: upTo(262_144),
  /** MLP hidden = mlpRatio · dModel. */
  mlpRatio: upTo(64).default(4),
  /** Side of the last layer's convolutional attention mask (paper: 11). */
  convKernel: upTo(255).default(11),
  /** Training updates of stage 2. */
  steps: upTo(STEPS_MAX),
  /** Peak learning rate after linear warm-up (paper: 4.5e-4 over 5,000). */
  lr: z.number().positive().default(4.5e-4),
  warmupSteps: nonNegInt.max(SCHEDULE_MAX).default(5_000),
  /** Plateau rule: halve lr when the smoothed loss has not improved by plateauThreshold (relative) for plateauPatience updates; at most plateauHalvings times (paper: 5). */
  plateauPatience: upTo(SCHEDULE_MAX).default(10_000),
  plateauThreshold: z.number().nonnegative().default(1e-3),
  plateauHalvings: nonNegInt.max(64).default(5),
  /** Plateau rule: the loss it watches is an EMA of the per-update training loss with this decay (noise filter). */
  plateauSmoothing: z.number().min(0).max(1).lt(1).default(0.99),
  /** Image → image attention: `sparse` (absent; the paper) gives each layer the row, column or
   *  convolutional pattern of model/masks.ts, `full` lets every layer attend every earlier image position
   *  (dense causal, as small open implementations do; the T × T scores cost the same, so it is a choice of
   *  quality, not speed, at small grids). Optional without a default, so specs written before it keep
   *  their hash. */
  attention: z.enum(['sparse', 'full']).optional(),
  /** Cool-down: the last cooldownSteps updates before `steps` scale the plateau rule's lr linearly down to
   *  zero (update s runs at lr·(steps − s)/cooldownSteps). Absent or 0 (the paper): no cool-down. Optional
   *  without a default, so specs written before it keep their hash. */
  cooldownSteps: nonNegInt.max(SCHEDULE_MAX).optional(),
  /** Logits use the transposed text/image token embeddings (GPT-2 style). false adds separate unembedding
   *  matrices, as docs/model.md's fp32 "unembeddings" suggest: paper-12b then counts 12.29B instead of 12.20B. */
  tiedUnembedding: z.boolean().default(true),
  /** AdamW (paper: 0.9, 0.96, 1e-8, weight decay 4.5e-2; none on gains, biases, embeddings). */
  adamBeta1: prob.default(0.9),
  adamBeta2: prob.default(0.96),
  adamEps: z.number().positive().default(1e-8),
  weightDecay: z.number().nonnegative().default(4.5e-2),
  /** Global gradient-norm clip (paper: 4). */
  gradClip: z.number().positive().default(4),
  /** Parameter EMA decay (paper: 0.99). */
  emaDecay: prob.default(0.99),
  /** BPE dropout in training (paper: 0.1). */
  bpeDropout: prob.default(0.1),
  /** Classifier-free guidance (not in the paper): the share of training captions replaced by the empty
   *  caption (all padding), so the model also learns p(z) and `guidance_scale` can push samples from it
   *  towards the caption. 0 (the paper) trains the conditional model only. */
  captionDropout: prob.default(0),
  /** Loss weights of text and image cross-entropy (paper: 1/8, 7/8). */
  textLossWeight: z
    .number()
    .nonnegative()
    .default(1 / 8),
  imageLossWeight: z
    .number()
    .nonnegative()
    .default(7 / 8),
});
export type TransformerConfig = z.infer<typeof TransformerConfig>;

export const RerankConfig = z.strictObject({
  /** Training updates of stage 3, the CLIP-style reranker (0: no reranker; the model is published without
   *  one and Generate's `candidates` must stay 1). */
  steps: nonNegInt.max(STEPS_MAX).default(0),
  /** Width of the joint embedding space both encoders project into. */
  embedDim: upTo(32_768).default(64),
  /** Image encoder: `imageStages` stages of 3×3 conv + ReLU + 2×2 max-pool, stage s of width
   *  imageWidth·2^s; the last feature map is flattened (so position survives) and projected. */
  imageWidth: upTo(4096).default(16),
  imageStages: upTo(16).default(3),
  /** The conv stack sees each image's channels standardized per image (a shape reads the same in every
   *  colour), and colour enters through a small MLP over the per-channel means and deviations. true also
   *  feeds the raw RGB into the conv stack: colour bound to place, at the cost of colour–shape habits. */
  rgbInConv: z.boolean().default(true),
  /** Text encoder: token + position embeddings of this width, `textLayers` pre-LN self-attention blocks
   *  (0: none, the mean of the embeddings), mean over the caption's tokens, projected. */
  textWidth: upTo(32_768).default(64),
  textLayers: nonNegInt.max(512).default(1),
  textHeads: upTo(512).default(4),
  /** Global batch of this stage (default train.batchSize). Every other pair of the global batch is a
   *  negative (ranks exchange their embeddings), and negatives that differ from a pair in one attribute
   *  only are what teach the model that attribute: contrastive models want large batches. */
  batchSize: upTo(1 << 20).optional(),
  /** Learning rate: linear warm-up over warmupSteps, then cosine to lrEnd at `steps`. */
  lr: z.number().positive().default(1e-3),
  lrEnd: z.number().nonnegative().default(1e-5),
  warmupSteps: nonNegInt.max(SCHEDULE_MAX).default(50),
  /** AdamW (CLIP: 0.9, 0.98, 1e-6, weight decay 0.2 on matrices only). */
  adamBeta1: prob.default(0.9),
  adamBeta2: prob.default(0.98),
  adamEps: z.number().positive().default(1e-6),
  weightDecay: z.number().nonnegative().default(0.2),
  /** Parameter EMA decay; the EMA weights are published. */
  emaDecay: prob.default(0.99),
  /** The learned logit scale starts here and is clipped at logitScaleMax (CLIP: 1/0.07 and 100). */
  logitScaleInit: z
    .number()
    .positive()
    .default(1 / 0.07),
  logitScaleMax: z.number().positive().default(100),
});
export type RerankConfig = z.infer<typeof RerankConfig>;

export const PowerSgdConfig = z.strictObject({
  /** Compress gradients between ranks (off: plain fp32 all-reduce). */
  enabled: z.boolean().default(true),
  /** Rank r of the low-rank approximation (12B: 896). */
  rank: upTo(65_536).default(4),
  /** torch powerSGD_hook: compress a matrix only if (n+m)·r·rate < n·m. */
  minCompressionRate: z.number().positive().default(2),
  /** torch powerSGD_hook: plain all-reduce for the first startIter updates. */
  startIter: nonNegInt.max(SCHEDULE_MAX).default(10),
  /** Warm-start Q from the previous step (torch) instead of a fixed random Q (paper). */
  warmStart: z.boolean().default(true),
  /** Wire format of compressed payloads. */
  wire: z.enum(['fp32', 'fp16']).default('fp32'),
  /** ε added before orthogonalization: P ← P + εI (paper: 1e-6), in the units P travels in (scaled when wire is fp16). */
  epsilon: z.number().nonnegative().default(1e-6),
  /** Error feedback (paper, torch default): what compression dropped is added to the next step's gradient. */
  errorFeedback: z.boolean().default(true),
  /** The stages whose gradients are compressed; absent: every stage. The paper compresses the transformer's
   *  (its dVAE trained apart). No default, so that specs written before the field existed keep their hash. */
  stages: z
    .array(z.enum(['dvae', 'transformer', 'rerank']))
    .refine((a) => new Set(a).size === a.length, 'each stage at most once')
    .optional(),
  /** fp16 wire: each resblock's scale starts at worldSize·2^scaleInitLog2 and stays within
   *  worldSize·2^[scaleMinLog2, scaleMaxLog2] (paper: 13, 7, 24). */
  scaleInitLog2: z.number().default(13),
  scaleMinLog2: z.number().default(7),
  scaleMaxLog2: z.number().default(24),
  /** fp16 wire: ×2^scaleGrowthLog2 per clean update (paper: 1/1000); ÷√2 on Inf/NaN, at most once per scaleBackoffInterval updates (paper: 125). */
  scaleGrowthLog2: z
    .number()
    .nonnegative()
    .default(1 / 1000),
  scaleBackoffInterval: upTo(SCHEDULE_MAX).default(125),
});
export type PowerSgdConfig = z.infer<typeof PowerSgdConfig>;

/** `train.elastic`: the run picks its world size within [min, max] from the workers that are there. */
export const ElasticConfig = z.strictObject({
  /** Never fewer ranks: below this the run waits for workers (as a run without `elastic` does). */
  min: upTo(65_536),
  /** Never more ranks, however many idle workers there are. */
  max: upTo(65_536),
});
export type ElasticConfig = z.infer<typeof ElasticConfig>;

export const TrainConfig = z.strictObject({
  /** Data-parallel ranks (one per worker slot); the first segment's with `elastic`. */
  worldSize: upTo(65_536),
  /** Global batch per update; stays fixed when worldSize changes: rank r of W takes samples
   *  [⌊rB/W⌋, ⌊(r+1)B/W⌋) and its gradient is weighted by its share, so any W ≤ batchSize gives the same
   *  update. */
  batchSize: upTo(1 << 20),
  /** Most samples a rank puts through one forward/backward (0: its whole slice at once). A larger slice
   *  accumulates gradients over ⌈slice / microBatch⌉ passes, so a shrinking world costs passes, not
   *  memory. */
  microBatch: nonNegInt.max(1 << 20).default(0),
  /** Adopt idle workers (grow at the next checkpoint) and shrink when a lost rank's replacement does not
   *  arrive within joinTimeout, between min and max ranks. Absent: W changes only by setWorldSize. */
  elastic: ElasticConfig.optional(),
  /** 'host': the paper's layout. The ranks on one machine (workers with the same `--host-id`) each hold
   *  a shard of the optimizer state and compress only their shard with PowerSGD, between machines;
   *  'none': every rank holds everything and PowerSGD runs between all ranks. Fixed for a run. */
  parameterSharding: z.enum(['none', 'host']).default('none'),
  /** Steps per segment (one set of trainShard activities). */
  segmentSteps: upTo(STEPS_MAX),
  /** Commit a checkpoint every this many steps; bounds the work lost when a machine dies. */
  checkpointEvery: upTo(STEPS_MAX),
  /** Seed of parameters init, data order, Gumbel noise, BPE dropout. */
  seed: nonNegInt.max(0xffffffff),
  /** Seconds without a heartbeat before a rank counts as dead. */
  heartbeatTimeout: z.number().positive().max(SECONDS_MAX).default(30),
  /** Seconds a collective operation waits for peers before PeerLostError. */
  collectiveTimeout: z.number().positive().max(SECONDS_MAX).default(20),
  /** Seconds the ranks of a segment wait for each other to arrive: longer than collectiveTimeout, since a
   *  replacement worker may still be starting (a waiting rank keeps heartbeating). */
  joinTimeout: z.number().positive().max(SECONDS_MAX).default(120),
  /** Committed checkpoints kept per stage. */
  keepCheckpoints: upTo(1000).default(3),
  /** Segment restarts allowed per stage before the run fails. */
  maxRestarts: nonNegInt.max(1_000_000).default(20),
  /** Seconds one step may keep a rank's process busy without a break (a large model on CPU): its heartbeat
   *  keeps flowing from a helper thread for that long; a process silent for longer counts as hung. */
  stepTimeout: z.number().positive().max(SECONDS_MAX).default(1800),
  /** Captions rank 0 samples at every transformer checkpoint, `sampleImages` each, into a grid stored with the
   *  checkpoint (part `samples`). The sampling seed is fixed, so the grids of successive checkpoints differ only
   *  by what the model learned. The other ranks wait at the checkpoint barrier meanwhile: keep the work well
   *  under collectiveTimeout. */
  samplePrompts: z.array(z.string().trim().min(1).max(200)).max(32).default([]),
  /** Images per sample prompt (every dVAE checkpoint reconstructs 8 held-out images). 0: no samples at all. */
  sampleImages: z.number().int().min(0).max(16).default(4),
  /** Quality measured at every checkpoint (rank 0, EMA weights): validation examples per set for codebook
   *  usage, reconstruction and caption information; 0 measures nothing. */
  qualityExamples: nonNegInt.default(64),
  /** … and plain samples per group (seen, held-out prompts) judged by the shapes analyzer (shapes set only). */
  qualitySamples: nonNegInt.default(16),
});
export type TrainConfig = z.infer<typeof TrainConfig>;

export const PresetName = z.enum(['tiny', 'shapes', 'cub', 'paper-12b']);
export type PresetName = z.infer<typeof PresetName>;

const RunSpecObject = z.strictObject({
  /** The preset this spec was built from. */
  preset: PresetName,
  /** Name the trained model is published under (KV dalle-models). */
  modelName: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]*$/, 'lowercase letters, digits, - and _')
    .default('dalle'),
  dataset: DatasetConfig,
  dvae: DvaeConfig,
  transformer: TransformerConfig,
  /** Absent in specs written before the reranker existed: then no rerank stage. */
  rerank: RerankConfig.prefault({}),
  powersgd: PowerSgdConfig,
  train: TrainConfig,
});

type Issue = { path: (string | number)[]; message: string };

/** The raw (merged, maybe invalid) spec object, section by section. */
type RawSpec = Record<string, Record<string, unknown> | undefined>;
/** A field of the raw spec when it is a finite positive number, else undefined (its own schema reports it). */
type NumberOf = (section: string, key: string) => number | undefined;

/** train.elastic's bounds, each where it is a number. */
function elasticBounds(o: RawSpec): { min?: number; max?: number } {
  const elastic = o.train?.elastic as Record<string, unknown> | undefined;
  const [min, max] = [elastic?.min, elastic?.max].map((v) => (typeof v === 'number' ? v : undefined));
  return { min, max };
}

/** The model's shapes: the dVAE's grid follows from its resolution and groups; heads split dModel. */
function shapeIssues(num: NumberOf): Issue[] {
  const out: Issue[] = [];
  const [res, grid, groups] = [num('dvae', 'resolution'), num('dvae', 'grid'), num('dvae', 'groups')];
  if (res && grid && groups) {
    const factor = 2 ** (groups - 1);
    if (res / factor !== grid) {
      out.push({
        path: ['dvae', 'grid'],
        message: `must equal resolution / 2^(groups-1) = ${res} / ${factor} = ${res / factor}`,
      });
    }
  }
  const [dModel, heads] = [num('transformer', 'dModel'), num('transformer', 'heads')];
  if (dModel && heads && dModel % heads !== 0) {
    out.push({ path: ['transformer', 'dModel'], message: `must be divisible by heads (${heads})` });
  }
  return out;
}

/** World size, elastic bounds and segments against the batch and the checkpoint period. */
function trainIssues(o: RawSpec, num: NumberOf): Issue[] {
  const out: Issue[] = [];
  const [batch, world] = [num('train', 'batchSize'), num('train', 'worldSize')];
  if (batch && world && world > batch) {
    out.push({
      path: ['train', 'worldSize'],
      message: `must be ≤ batchSize (${batch}): every rank needs a sample of the global batch`,
    });
  }
  const { min, max } = elasticBounds(o);
  if (min !== undefined && max !== undefined) {
    if (min > max) out.push({ path: ['train', 'elastic', 'min'], message: `must be ≤ max (${max})` });
    if (batch && max > batch)
      out.push({ path: ['train', 'elastic', 'max'], message: `must be ≤ batchSize (${batch})` });
    if (world && (world < min || world > max))
      out.push({ path: ['train', 'worldSize'], message: `must be within elastic [${min}, ${max}]` });
  }
  const [seg, every] = [num('train', 'segmentSteps'), num('train', 'checkpointEvery')];
  if (seg && every && seg % every !== 0) {
    out.push({
      path: ['train', 'segmentSteps'],
      message: `must be a multiple of checkpointEvery (${every})`,
    });
  }
  return out;
}

/** The reranker (when it trains): its image stages divide the resolution, its heads its width, and its
 *  batch feeds every rank with at least two pairs in all. */
function rerankIssues(o: RawSpec, num: NumberOf): Issue[] {
  const out: Issue[] = [];
  if (!num('rerank', 'steps')) return out;
  const res = num('dvae', 'resolution');
  const stages = num('rerank', 'imageStages') ?? 3;
  if (res && res % 2 ** stages !== 0) {
    out.push({
      path: ['rerank', 'imageStages'],
      message: `dvae.resolution ${res} must be divisible by 2^imageStages = ${2 ** stages}`,
    });
  }
  const [textWidth, textHeads] = [num('rerank', 'textWidth') ?? 64, num('rerank', 'textHeads') ?? 4];
  if (textWidth % textHeads !== 0) {
    out.push({ path: ['rerank', 'textWidth'], message: `must be divisible by textHeads (${textHeads})` });
  }
  const rerankBatch = num('rerank', 'batchSize');
  // Every rank of the stage needs a pair; an elastic run's rerank stage stays within [elastic.min, batch].
  const leastWorld = Math.max(num('train', 'worldSize') ?? 1, elasticBounds(o).min ?? 1);
  if (rerankBatch && rerankBatch < leastWorld) {
    out.push({
      path: ['rerank', 'batchSize'],
      message: `must be ≥ train.worldSize and train.elastic.min (${leastWorld}): every rank needs a pair`,
    });
  }
  // The contrastive loss needs another pair to tell the right caption from.
  const pairs = rerankBatch ?? num('train', 'batchSize');
  if (pairs !== undefined && pairs < 2) {
    out.push({
      path: ['rerank', 'batchSize'],
      message: 'the rerank stage needs a global batch of ≥ 2 pairs',
    });
  }
  return out;
}

/** Options of the dVAE that need another option, and the synthetic dataset drawn at the dVAE's size. */
function dvaeDataIssues(o: RawSpec, num: NumberOf): Issue[] {
  const out: Issue[] = [];
  if (num('dvae', 'codeRestartEvery') && o.dvae?.straightThrough !== true && o.dvae?.quantizer !== 'vq') {
    out.push({
      path: ['dvae', 'codeRestartEvery'],
      message:
        'needs dvae.straightThrough: true or dvae.quantizer: vq (code usage is read from the gradient of one-hot codes)',
    });
  }
  if (num('dvae', 'codeSplitEvery')) {
    const why =
      o.dvae?.quantizer !== undefined && o.dvae.quantizer !== 'gumbel'
        ? `needs dvae.quantizer gumbel, not ${o.dvae.quantizer}`
        : num('dvae', 'codeLogitScale')
          ? 'needs dvae.codeLogitScale 0 (a split moves the linear logits of a code)'
          : num('dvae', 'codeRestartEvery')
            ? 'cannot be combined with dvae.codeRestartEvery (both rewrite codes)'
            : undefined;
    if (why) out.push({ path: ['dvae', 'codeSplitEvery'], message: why });
  }
  const res = num('dvae', 'resolution');
  const canvas = o.dataset?.kind === 'shapes' ? num('dataset', 'canvas') : undefined;
  if (canvas && res && canvas !== res) {
    out.push({ path: ['dataset', 'canvas'], message: `must equal dvae.resolution (${res})` });
  }
  return out;
}

/** Rules that span fields. Written over the raw (merged, maybe invalid) object so that a bad file gets
 *  these reported together with the per-field errors, not one round later. */
export function crossFieldIssues(raw: unknown): Issue[] {
  const o = (raw ?? {}) as RawSpec;
  const num: NumberOf = (sec, k) => {
    const v = o[sec]?.[k];
    return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
  };
  return [...shapeIssues(num), ...trainIssues(o, num), ...rerankIssues(o, num), ...dvaeDataIssues(o, num)];
}

/** A fully resolved run spec: preset values with overrides applied, cross-field rules checked. */
export const RunSpec = RunSpecObject.superRefine((s, ctx) => {
  for (const i of crossFieldIssues(s)) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
});
export type RunSpec = z.infer<typeof RunSpec>;
