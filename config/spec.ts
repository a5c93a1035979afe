// The run spec: every knob of a training run, validated with zod at every boundary (CLI, workflow input,
// checkpoint manifest). Schemas are strict: an unknown key is an error, never silently ignored.
// Presets (./presets.ts) give base values; a user's file overrides only what differs.
import { z } from 'zod';

const positiveInt = z.number().int().positive();
const nonNegInt = z.number().int().nonnegative();
const prob = z.number().min(0).max(1);

export const ShapesDatasetConfig = z.strictObject({
  kind: z.literal('shapes'),
  /** Images in the training split (held-out compositions are never among them). */
  count: positiveInt.default(4096),
  /** Canvas side in pixels; must equal dvae.resolution unless preprocessing rescales. */
  canvas: positiveInt.default(32),
  /** Seed of the synthetic generator (independent of train.seed so data is stable across runs). */
  seed: nonNegInt.default(1234),
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
  limit: nonNegInt.default(0),
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
  resolution: positiveInt,
  /** Token grid side (paper: 32); must be resolution / 2^(groups-1). */
  grid: positiveInt,
  /** Codebook size K (paper: 8192). */
  codebookSize: positiveInt,
  /** Base hidden width n_hid (paper: 256); group g uses (g+1)·hidden (encoder). */
  hidden: positiveInt,
  /** Resblock groups (paper: 4), max-pool / upsample between them. */
  groups: positiveInt,
  /** Resblocks per group (paper: 2). */
  blocksPerGroup: positiveInt,
  /** Training updates of stage 1. */
  steps: positiveInt,
  /** Peak learning rate (paper: 1e-4), cosine-decayed to lrEnd over lrDecaySteps. */
  lr: z.number().positive().default(1e-4),
  lrEnd: z.number().nonnegative().default(1.25e-6),
  lrDecaySteps: positiveInt.default(1_200_000),
  /** KL weight β: cosine 0 → betaMax over betaWarmupSteps (paper: 6.6 over 5,000). */
  betaMax: z.number().nonnegative().default(6.6),
  betaWarmupSteps: positiveInt.default(5_000),
  /** Gumbel-softmax temperature τ: cosine tauStart → tauEnd over tauDecaySteps (paper: 1 → 1/16 over 150,000). */
  tauStart: z.number().positive().default(1),
  tauEnd: z
    .number()
    .positive()
    .default(1 / 16),
  tauDecaySteps: positiveInt.default(150_000),
  /** AdamW (paper: 0.9, 0.999, 1e-8, weight decay 1e-4). */
  adamBeta1: prob.default(0.9),
  adamBeta2: prob.default(0.999),
  adamEps: z.number().positive().default(1e-8),
  weightDecay: z.number().nonnegative().default(1e-4),
  /** Parameter EMA decay (paper: 0.999). */
  emaDecay: prob.default(0.999),
  /** ε of the logit-Laplace pixel map φ (paper: 0.1). */
  logitLaplaceEps: z.number().positive().max(0.5).default(0.1),
  /** Feed the encoder 2φ(x)−1 instead of φ(x) (the official code feeds φ(x): false). On flat white
   *  backgrounds the uncentred input's constant term makes every cell pick one code early in training. */
  centerInput: z.boolean().default(false),
});
export type DvaeConfig = z.infer<typeof DvaeConfig>;

export const TransformerConfig = z.strictObject({
  /** Decoder layers (12B: 64). */
  layers: positiveInt,
  /** Attention heads (12B: 62). */
  heads: positiveInt,
  /** Model width (12B: 3968 = 62 × 64); must be divisible by heads. */
  dModel: positiveInt,
  /** Text positions (12B: 256). */
  textLen: positiveInt,
  /** BPE text vocabulary (12B: 16,384). */
  vocabSize: positiveInt,
  /** MLP hidden = mlpRatio · dModel. */
  mlpRatio: positiveInt.default(4),
  /** Side of the last layer's convolutional attention mask (paper: 11). */
  convKernel: positiveInt.default(11),
  /** Training updates of stage 2. */
  steps: positiveInt,
  /** Peak learning rate after linear warm-up (paper: 4.5e-4 over 5,000). */
  lr: z.number().positive().default(4.5e-4),
  warmupSteps: nonNegInt.default(5_000),
  /** Plateau rule: halve lr when the smoothed loss has not improved by plateauThreshold (relative) for plateauPatience updates; at most plateauHalvings times (paper: 5). */
  plateauPatience: positiveInt.default(10_000),
  plateauThreshold: z.number().nonnegative().default(1e-3),
  plateauHalvings: nonNegInt.default(5),
  /** Plateau rule: the loss it watches is an EMA of the per-update training loss with this decay (noise filter). */
  plateauSmoothing: z.number().min(0).max(1).lt(1).default(0.99),
  /** Logits use the transposed text/image token embeddings (GPT-2 style). false adds separate unembedding
   *  matrices, as PAPER.md's fp32 "unembeddings" suggest: paper-12b then counts 12.29B instead of 12.20B. */
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

export const PowerSgdConfig = z.strictObject({
  /** Compress gradients between ranks (off: plain fp32 all-reduce). */
  enabled: z.boolean().default(true),
  /** Rank r of the low-rank approximation (12B: 896). */
  rank: positiveInt.default(4),
  /** torch powerSGD_hook: compress a matrix only if (n+m)·r·rate < n·m. */
  minCompressionRate: z.number().positive().default(2),
  /** torch powerSGD_hook: plain all-reduce for the first startIter updates. */
  startIter: nonNegInt.default(10),
  /** Warm-start Q from the previous step (torch) instead of a fixed random Q (paper). */
  warmStart: z.boolean().default(true),
  /** Wire format of compressed payloads. */
  wire: z.enum(['fp32', 'fp16']).default('fp32'),
  /** ε added before orthogonalization: P ← P + εI (paper: 1e-6), in the units P travels in (scaled when wire is fp16). */
  epsilon: z.number().nonnegative().default(1e-6),
  /** Error feedback (paper, torch default): what compression dropped is added to the next step's gradient. */
  errorFeedback: z.boolean().default(true),
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
  scaleBackoffInterval: positiveInt.default(125),
});
export type PowerSgdConfig = z.infer<typeof PowerSgdConfig>;

/** `train.elastic`: the run picks its world size within [min, max] from the workers that are there. */
export const ElasticConfig = z.strictObject({
  /** Never fewer ranks: below this the run waits for workers (as a run without `elastic` does). */
  min: positiveInt,
  /** Never more ranks, however many idle workers there are. */
  max: positiveInt,
});
export type ElasticConfig = z.infer<typeof ElasticConfig>;

export const TrainConfig = z.strictObject({
  /** Data-parallel ranks (one per worker slot); the first segment's with `elastic`. */
  worldSize: positiveInt,
  /** Global batch per update; stays fixed when worldSize changes: rank r of W takes samples
   *  [⌊rB/W⌋, ⌊(r+1)B/W⌋) and its gradient is weighted by its share, so any W ≤ batchSize gives the same
   *  update. */
  batchSize: positiveInt,
  /** Most samples a rank puts through one forward/backward (0: its whole slice at once). A larger slice
   *  accumulates gradients over ⌈slice / microBatch⌉ passes, so a shrinking world costs passes, not
   *  memory. */
  microBatch: nonNegInt.default(0),
  /** Adopt idle workers (grow at the next checkpoint) and shrink when a lost rank's replacement does not
   *  arrive within joinTimeout, between min and max ranks. Absent: W changes only by setWorldSize. */
  elastic: ElasticConfig.optional(),
  /** 'host': the paper's layout. The ranks on one machine (workers with the same `--host-id`) each hold
   *  a shard of the optimizer state and compress only their shard with PowerSGD, between machines;
   *  'none': every rank holds everything and PowerSGD runs between all ranks. Fixed for a run. */
  parameterSharding: z.enum(['none', 'host']).default('none'),
  /** Steps per segment (one set of trainShard activities). */
  segmentSteps: positiveInt,
  /** Commit a checkpoint every this many steps; bounds the work lost when a machine dies. */
  checkpointEvery: positiveInt,
  /** Seed of parameters init, data order, Gumbel noise, BPE dropout. */
  seed: nonNegInt,
  /** Seconds without a heartbeat before a rank counts as dead. */
  heartbeatTimeout: z.number().positive().default(30),
  /** Seconds a collective operation waits for peers before PeerLostError. */
  collectiveTimeout: z.number().positive().default(20),
  /** Seconds the ranks of a segment wait for each other to arrive: longer than collectiveTimeout, since a
   *  replacement worker may still be starting (a waiting rank keeps heartbeating). */
  joinTimeout: z.number().positive().default(120),
  /** Committed checkpoints kept per stage. */
  keepCheckpoints: positiveInt.default(3),
  /** Segment restarts allowed per stage before the run fails. */
  maxRestarts: nonNegInt.default(20),
  /** Captions rank 0 samples at every transformer checkpoint, `sampleImages` each, into a grid stored with the
   *  checkpoint (part `samples`). The sampling seed is fixed, so the grids of successive checkpoints differ only
   *  by what the model learned. The other ranks wait at the checkpoint barrier meanwhile: keep the work well
   *  under collectiveTimeout. */
  samplePrompts: z.array(z.string().trim().min(1).max(200)).max(32).default([]),
  /** Images per sample prompt (every dVAE checkpoint reconstructs 8 held-out images). 0: no samples at all. */
  sampleImages: z.number().int().min(0).max(16).default(4),
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
  powersgd: PowerSgdConfig,
  train: TrainConfig,
});

type Issue = { path: (string | number)[]; message: string };

/** Rules that span fields. Written over the raw (merged, maybe invalid) object so that a bad file gets
 *  these reported together with the per-field errors, not one round later. */
export function crossFieldIssues(raw: unknown): Issue[] {
  const o = (raw ?? {}) as Record<string, Record<string, unknown> | undefined>;
  const num = (sec: string, k: string) => {
    const v = o[sec]?.[k];
    return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
  };
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
  const [batch, world] = [num('train', 'batchSize'), num('train', 'worldSize')];
  if (batch && world && world > batch) {
    out.push({
      path: ['train', 'worldSize'],
      message: `must be ≤ batchSize (${batch}): every rank needs a sample of the global batch`,
    });
  }
  const elastic = o.train?.elastic as Record<string, unknown> | undefined;
  const [min, max] = [elastic?.min, elastic?.max].map((v) => (typeof v === 'number' ? v : undefined));
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
  const canvas = o.dataset?.kind === 'shapes' ? num('dataset', 'canvas') : undefined;
  if (canvas && res && canvas !== res) {
    out.push({ path: ['dataset', 'canvas'], message: `must equal dvae.resolution (${res})` });
  }
  return out;
}

/** A fully resolved run spec: preset values with overrides applied, cross-field rules checked. */
export const RunSpec = RunSpecObject.superRefine((s, ctx) => {
  for (const i of crossFieldIssues(s)) ctx.addIssue({ code: 'custom', path: i.path, message: i.message });
});
export type RunSpec = z.infer<typeof RunSpec>;
