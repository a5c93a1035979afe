// Pictures of a run while it trains: at every checkpoint rank 0 draws one grid from the weights it is about
// to store (their EMA, what a published model would carry). A dVAE checkpoint shows 8 held-out images above
// their reconstructions; a transformer checkpoint shows `train.sampleImages` samples for each of
// `train.samplePrompts`, decoded by the run's final dVAE. The grid is stored as the checkpoint's part
// `samples`.
//
// Its own random stream: sampling draws from the counter-based stream of one fixed seed, mixed from
// train.seed and a key no training stream uses, and reads the trainer's state without changing it, so a run
// trains bit-identically with samples on or off. The same seed at every checkpoint makes the grids of one
// run differ only by what the model learned in between.
import type { RunSpec } from '../config/index.ts';
import { cropRgb, areaResizeUint8, isHeldOut, parseShapesCaption } from '../data/index.ts';
import { labelledGridPng, type GridRow } from '../data/image-grid.ts';
import { createSampler, Dvae, rgbToPngs, Transformer } from '../model/index.ts';
import { mixSeed } from '../random/index.ts';
import type { CheckpointStore } from '../store/index.ts';
import { dataset } from './datasets.ts';
import { encodedData } from './encoded.ts';
import { frozenDvae } from './encode-dataset.ts';
import type { StageName } from '../contract/index.ts';

/** What the manifest says about its grid (`meta.samples`). */
export interface SamplesMeta {
  kind: 'reconstructions' | 'generated';
  /** Row labels top to bottom: prompts, or 'held-out images' / 'reconstructions'. */
  rows: string[];
  /** Images per row. */
  images: number;
  /** Seed of the sampling stream (generated grids). */
  seed: number;
  /** Milliseconds rank 0 spent drawing the grid (sampling, decoding, PNG). */
  ms: number;
}

export interface SampleGrid {
  png: Uint8Array;
  meta: SamplesMeta;
}

/** A grid before its timing is known. */
type Drawn = { png: Uint8Array; meta: Omit<SamplesMeta, 'ms'> };

export interface SampleContext {
  runId: string;
  stage: StageName;
  spec: RunSpec;
  /** The EMA weights the grid is drawn from (`paramSpecs()` order). */
  ema: () => Float32Array[];
  checkpoints: CheckpointStore;
}

/** Held-out images a dVAE grid reconstructs (fewer when the split is smaller). */
export const RECONSTRUCTIONS = 8;

/** The seed of every checkpoint's sample grid of a run. */
export function samplesSeed(spec: RunSpec): number {
  return mixSeed(spec.train.seed, 'checkpoint-samples');
}

/** The grid of this checkpoint, or undefined when the spec asks for none or the stage draws nothing (the
 *  reranker scores images, it makes none). */
export async function renderCheckpointSamples(ctx: SampleContext): Promise<SampleGrid | undefined> {
  const { spec, stage } = ctx;
  const n = spec.train.sampleImages;
  if (stage === 'rerank') return undefined;
  if (n === 0 || (stage === 'transformer' && spec.train.samplePrompts.length === 0)) return undefined;
  const t0 = performance.now();
  const grid = stage === 'dvae' ? await reconstructions(ctx, RECONSTRUCTIONS) : await generated(ctx, n);
  return { png: grid.png, meta: { ...grid.meta, ms: Math.round(performance.now() - t0) } };
}

/** Centre square of an image, area-resized to res × res. */
function centreSquare(rgb: Uint8Array, w: number, h: number, res: number): Uint8Array {
  const side = Math.min(w, h);
  const sq = cropRgb(rgb, w, h, Math.floor((w - side) / 2), Math.floor((h - side) / 2), side, side);
  return side === res ? sq : areaResizeUint8(sq, side, side, res, res);
}

/** n images spread over the held-out split (the training split when there is none). */
async function sampleImages(spec: RunSpec, n: number): Promise<{ rgb: Uint8Array; n: number }> {
  const heldout = await dataset(spec.dataset, 'heldout');
  const ds = heldout.size > 0 ? heldout : await dataset(spec.dataset);
  const m = Math.min(n, ds.size);
  const res = spec.dvae.resolution;
  const rgb = new Uint8Array(m * res * res * 3);
  for (let k = 0; k < m; k++) {
    const item = await ds.get(Math.floor((k * ds.size) / m), { seed: spec.train.seed, epoch: 0 });
    rgb.set(centreSquare(item.rgb, item.width, item.height, res), k * res * res * 3);
  }
  return { rgb, n: m };
}

async function reconstructions(ctx: SampleContext, n: number): Promise<Drawn> {
  const images = await sampleImages(ctx.spec, n);
  const dvae = Dvae.fromParams(ctx.spec.dvae, ctx.ema());
  let recon: Uint8Array;
  try {
    recon = dvae.decode(dvae.encode(images.rgb));
  } finally {
    dvae.dispose();
  }
  const rows: GridRow[] = [
    { label: 'held-out images', pngs: await rgbToPngs(images.rgb, images.n) },
    { label: 'reconstructions', pngs: await rgbToPngs(recon, images.n) },
  ];
  return {
    png: await labelledGridPng(rows),
    meta: { kind: 'reconstructions', rows: rows.map((r) => r.label), images: images.n, seed: 0 },
  };
}

/** The run's final dVAE decoder, kept for the next checkpoint of the same run (one run at a time). */
let decoderCache: { key: string; dvae: Promise<Dvae> } | undefined;

function runDecoder(checkpoints: CheckpointStore, runId: string, spec: RunSpec): Promise<Dvae> {
  if (decoderCache?.key === runId) return decoderCache.dvae;
  const old = decoderCache?.dvae;
  void old?.then((d) => d.dispose()).catch(() => undefined);
  const dvae = (async () => {
    const m = await checkpoints.resolve(runId, 'dvae');
    if (!m) throw new Error(`run ${runId} has no committed dVAE checkpoint to decode samples with`);
    return frozenDvae(checkpoints, m, spec);
  })();
  decoderCache = { key: runId, dvae };
  dvae.catch(() => {
    if (decoderCache?.dvae === dvae) decoderCache = undefined;
  });
  return dvae;
}

/** A prompt's row label; shapes prompts whose colour–shape pair no training image has say so. */
function promptLabel(spec: RunSpec, prompt: string): string {
  if (spec.dataset.kind !== 'shapes') return prompt;
  const c = parseShapesCaption(prompt);
  return c && isHeldOut(c) ? `${prompt} (held-out)` : prompt;
}

async function generated(ctx: SampleContext, n: number): Promise<Drawn> {
  const { spec, runId, checkpoints } = ctx;
  const prompts = spec.train.samplePrompts;
  const { tokenizer } = await encodedData(checkpoints, runId);
  const decoder = await runDecoder(checkpoints, runId, spec);
  const seed = samplesSeed(spec);
  const model = Transformer.fromArrays(spec.transformer, spec.dvae, ctx.ema());
  let tokens: Int32Array;
  const N = model.dims.imageLen;
  try {
    // One batched session for every image of every prompt; row k of prompt p has index p·n + k.
    const session = createSampler(model).start(
      prompts.flatMap((p, pi) => {
        const text = tokenizer.encode(p, spec.transformer.textLen).ids;
        return Array.from({ length: n }, (_, k) => ({ text, seed, index: pi * n + k }));
      }),
    );
    try {
      while (!session.done) session.step();
      tokens = new Int32Array(prompts.length * n * N);
      for (let r = 0; r < prompts.length * n; r++) tokens.set(session.tokens(r), r * N);
    } finally {
      session.dispose();
    }
  } finally {
    model.dispose();
  }
  const pngs = await rgbToPngs(decoder.decode(tokens), prompts.length * n);
  const rows = prompts.map((p, pi) => ({
    label: promptLabel(spec, p),
    pngs: pngs.slice(pi * n, (pi + 1) * n),
  }));
  return {
    png: await labelledGridPng(rows),
    meta: { kind: 'generated', rows: rows.map((r) => r.label), images: n, seed },
  };
}
