// Dataset kind (e): the synthetic shapes set, rendered on demand (nothing on disk, nothing skipped).
import type { ShapesDatasetConfig } from '../config/index.ts';
import {
  checkIndex,
  pickCaption,
  type CaptionDraw,
  type Dataset,
  type DatasetItem,
  type Split,
} from './dataset.ts';
import { sceneCaptions, sceneItem, type SceneOptions } from './shapes-scenes.ts';
import { renderScene, shapeItem, shapesSplitSize, type SceneShape } from './shapes.ts';
import type { z } from 'zod';

type ShapesCfg = Pick<z.infer<typeof ShapesDatasetConfig>, 'kind' | 'count' | 'canvas' | 'seed'> &
  Partial<Pick<z.infer<typeof ShapesDatasetConfig>, 'extraColors' | 'extraShapes' | 'maxShapes'>>;

export class ShapesDataset implements Dataset {
  readonly kind = 'shapes' as const;
  readonly size: number;
  readonly skipped: Record<string, number> = {};
  private readonly canvas: number;
  private readonly seed: number;
  private readonly scenes: SceneOptions;

  constructor(
    cfg: ShapesCfg,
    readonly split: Split = 'train',
  ) {
    this.canvas = cfg.canvas;
    this.seed = cfg.seed;
    this.size = shapesSplitSize(split, cfg.count);
    // The held-out split is always the single-shape held-out compositions: what the evaluation asks for.
    this.scenes = {
      extraColors: split === 'train' ? (cfg.extraColors ?? 0) : 0,
      extraShapes: split === 'train' ? (cfg.extraShapes ?? 0) : 0,
      maxShapes: split === 'train' ? (cfg.maxShapes ?? 1) : 1,
    };
  }

  /** The shapes item i shows, with their jitter (what the image shows, for evaluators). */
  scene(i: number): SceneShape[] {
    checkIndex(i, this.size);
    return this.split === 'train'
      ? sceneItem(i, this.seed, this.canvas, this.scenes)
      : [shapeItem(i, this.split, this.seed)];
  }

  /** The first (in a single-shape set, the only) shape of item i. */
  spec(i: number): SceneShape {
    return this.scene(i)[0]!;
  }

  async get(i: number, draw?: CaptionDraw): Promise<DatasetItem> {
    const scene = this.scene(i);
    return {
      rgb: renderScene(scene, this.canvas),
      width: this.canvas,
      height: this.canvas,
      caption: pickCaption(sceneCaptions(scene), i, draw),
    };
  }

  async captions(i: number): Promise<string[]> {
    return sceneCaptions(this.scene(i));
  }

  key(i: number): string {
    checkIndex(i, this.size);
    return `shapes/${this.split}/${i}`;
  }
}
