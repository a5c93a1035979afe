// The images and captions quality is measured on, never trained on:
//   - shapes set: `heldOut`, the held-out compositions (colour–shape pairs absent from training), and
//     `seen`, compositions of the training split with jitter drawn from another seed (the same pictures
//     the model trains on, up to a pixel of jitter: the split that tells "learns" from "generalises");
//   - any other dataset: its held-out split when it has one, else the first items of the training split
//     (then the numbers measure fit, not generalisation, and say so by their name).
import type { DatasetConfig } from '../config/index.ts';
import {
  openDataset,
  preprocessTransformer,
  renderShape,
  shapeCaptions,
  shapeItem,
  HELD_OUT_COMPOSITIONS,
  TRAIN_COMPOSITIONS,
  type ShapeSpec,
} from '../data/index.ts';
import type { ValidationName } from '../contract/index.ts';
import { rngFor } from '../random/index.ts';
import { pickCompositions } from './shapes-eval.ts';

export interface ValidationSet {
  name: ValidationName;
  /** RGB [n, R, R, 3], preprocessed as stage 2 sees images. */
  images: Uint8Array;
  captions: string[];
  n: number;
  /** Shapes set only: what each image shows. */
  truth?: ShapeSpec[];
}

/** Shapes-set validation images: `n` compositions of `which` (all 108 held-out ones at n ≥ 108). */
export function shapesValidation(
  which: 'seen' | 'heldOut',
  n: number,
  canvas: number,
  datasetSeed: number,
): ValidationSet {
  const truth: ShapeSpec[] =
    which === 'heldOut'
      ? HELD_OUT_COMPOSITIONS.slice(0, n).map((_, i) => shapeItem(i, 'heldout', datasetSeed))
      : pickCompositions(TRAIN_COMPOSITIONS, Math.min(n, TRAIN_COMPOSITIONS.length), datasetSeed, 'val').map(
          (c) => {
            const i = TRAIN_COMPOSITIONS.indexOf(c);
            return { ...c, jitter: shapeItem(i, 'train', datasetSeed + 1).jitter };
          },
        );
  const images = new Uint8Array(truth.length * canvas * canvas * 3);
  truth.forEach((s, i) => images.set(renderShape(s, canvas), i * canvas * canvas * 3));
  const captions = truth.map((s, i) => shapeCaptions(s)[i % 6]!);
  return { name: which, images, captions, n: truth.length, truth };
}

/** The validation sets of a dataset (see the file header), at most `n` items each. */
export async function validationSets(
  cfg: DatasetConfig,
  n: number,
  resolution: number,
  seed: number,
): Promise<ValidationSet[]> {
  if (cfg.kind === 'shapes')
    return [
      shapesValidation('seen', n, resolution, cfg.seed),
      shapesValidation('heldOut', n, resolution, cfg.seed),
    ];
  let ds = await openDataset(cfg, { split: 'heldout' });
  const name: ValidationName = ds.size > 0 ? 'heldOut' : 'train';
  if (ds.size === 0) ds = await openDataset(cfg, { split: 'train' });
  const m = Math.min(n, ds.size);
  const images = new Uint8Array(m * resolution * resolution * 3);
  const captions: string[] = [];
  for (let i = 0; i < m; i++) {
    const item = await ds.get(i, { seed, epoch: 0 });
    const rng = rngFor(seed, 'validation', i);
    images.set(
      preprocessTransformer(item.rgb, item.width, item.height, resolution, rng),
      i * resolution ** 2 * 3,
    );
    captions.push(item.caption);
  }
  return [{ name, images, captions, n: m }];
}
