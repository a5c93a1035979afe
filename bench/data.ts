// `dalle bench data [--json]`: throughput of the data side, so we know whether input ever bounds a step.
//   - preprocessing of one 500×375 photo at res 256 (dVAE and transformer pipelines): ms per image;
//   - loadBatch on the `shapes` preset (rendered, 32×32): images/s;
//   - loadBatch on a folder of 500×375 JPEGs (sharp decode + AREA resize to 256): images/s, and the
//     open-time cost of verify 'decode' versus 'header' per image;
//   - the BPE tokenizer: training on the shapes captions, encode captions/s with and without dropout.
// Figures only (machines are shared and noisy): quote ratios from one run.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { loadSpec, resolveSpec } from '../config/index.ts';
import {
  datasetCaptions,
  loadBatch,
  openDataset,
  preprocessDvae,
  preprocessTransformer,
  Tokenizer,
  type Dataset,
} from '../data/index.ts';
import { rngFor } from '../random/index.ts';
import { command, parseCommand } from '../services/cli/args.ts';

export const cli = command({
  name: 'bench data',
  summary: 'throughput of the data side: preprocessing, loadBatch (shapes, a JPEG folder), BPE tokenizer',
  options: { json: { type: 'boolean', help: 'print the figures as JSON' } },
});

function photo(w: number, h: number, seed: number): Uint8Array {
  // Smooth gradients plus noise: compresses like a photo, not like flat colour.
  const rgb = new Uint8Array(w * h * 3);
  const r = rngFor(seed, 'bench-photo');
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3;
      rgb[p] = (x * 255) / w;
      rgb[p + 1] = (y * 255) / h;
      rgb[p + 2] = r.int(256);
    }
  }
  return rgb;
}

async function time<T>(fn: () => Promise<T> | T): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

async function batchesPerSecond(
  ds: Dataset,
  res: number,
  globalBatch: number,
  steps: number,
  pipeline: 'dvae' | 'transformer',
): Promise<number> {
  await loadBatch(ds, { seed: 0, step: 0, rank: 0, worldSize: 1, globalBatch, resolution: res, pipeline }); // warm-up
  const { ms } = await time(async () => {
    for (let step = 1; step <= steps; step++)
      await loadBatch(ds, { seed: 0, step, rank: 0, worldSize: 1, globalBatch, resolution: res, pipeline });
  });
  return (steps * globalBatch) / (ms / 1000);
}

export async function main(argv: string[]): Promise<void> {
  const json = !!parseCommand(argv, cli).values.json;
  const out: Record<string, number> = {};
  const log = (k: string, v: number, unit: string): void => {
    out[k] = Number(v.toPrecision(4));
    if (!json) console.log(`${k.padEnd(40)} ${out[k]} ${unit}`);
  };

  // 1. Preprocessing one photo.
  const img = photo(500, 375, 1);
  const reps = 20;
  let t = await time(() => {
    for (let i = 0; i < reps; i++) preprocessDvae(img, 500, 375, 256, rngFor(i));
  });
  log('preprocess_dvae_500x375_to_256_ms', t.ms / reps, 'ms/image');
  t = await time(() => {
    for (let i = 0; i < reps; i++) preprocessTransformer(img, 500, 375, 256, rngFor(i));
  });
  log('preprocess_transformer_500x375_to_256_ms', t.ms / reps, 'ms/image');

  // 2. Shapes preset.
  const spec = loadSpec('shapes');
  const shapes = await openDataset(spec.dataset);
  log(
    'shapes_loadbatch_dvae_images_per_s',
    await batchesPerSecond(shapes, spec.dvae.resolution, spec.train.batchSize, 20, 'dvae'),
    'images/s',
  );

  // 3. A folder of JPEG photos.
  const dir = await mkdtemp(join(tmpdir(), 'bench-data-'));
  try {
    const n = 48;
    for (let i = 0; i < n; i++) {
      await writeFile(
        join(dir, `${i}.jpg`),
        await sharp(photo(500, 375, i), { raw: { width: 500, height: 375, channels: 3 } })
          .jpeg({ quality: 90 })
          .toBuffer(),
      );
      await writeFile(join(dir, `${i}.txt`), `photo number ${i}\n`);
    }
    const cfg = (verify: 'decode' | 'header'): Parameters<typeof openDataset>[0] =>
      resolveSpec({ preset: 'tiny', dataset: { kind: 'folder', path: dir, verify } }).dataset;
    const opened = await time(() => openDataset(cfg('decode')));
    log('folder_open_verify_decode_ms_per_image', opened.ms / n, 'ms/image');
    const header = await time(() => openDataset(cfg('header')));
    log('folder_open_verify_header_ms_per_image', header.ms / n, 'ms/image');
    log(
      'folder_jpeg_loadbatch_dvae_256_images_per_s',
      await batchesPerSecond(opened.value, 256, 16, 3, 'dvae'),
      'images/s',
    );
    log(
      'folder_jpeg_loadbatch_transformer_256_images_per_s',
      await batchesPerSecond(opened.value, 256, 16, 3, 'transformer'),
      'images/s',
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }

  // 4. Tokenizer.
  const captions: string[] = [];
  for await (const c of datasetCaptions(shapes)) captions.push(c);
  const trained = await time(() => Tokenizer.train(captions, { vocabSize: spec.transformer.vocabSize }));
  log('tokenizer_train_shapes_captions_ms', trained.ms, `ms (${captions.length} captions)`);
  const tok = trained.value;
  const m = 5000;
  t = await time(() => {
    for (let i = 0; i < m; i++) tok.encode(captions[i % captions.length], spec.transformer.textLen);
  });
  log('tokenizer_encode_captions_per_s', m / (t.ms / 1000), 'captions/s');
  t = await time(() => {
    for (let i = 0; i < m; i++)
      tok.encode(captions[i % captions.length], spec.transformer.textLen, { dropout: 0.1, seed: i });
  });
  log('tokenizer_encode_dropout_captions_per_s', m / (t.ms / 1000), 'captions/s');
  if (json) console.log(JSON.stringify(out));
}
