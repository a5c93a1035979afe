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
import { renderShape, shapeCaptions, shapeItem, shapesSplitSize } from './shapes.ts';
import type { z } from 'zod';

export class ShapesDataset implements Dataset {
  readonly kind = 'shapes' as const;
  readonly size: number;
  readonly skipped: Record<string, number> = {};
  private readonly canvas: number;
  private readonly seed: number;

  constructor(
    cfg: z.infer<typeof ShapesDatasetConfig>,
    readonly split: Split = 'train',
  ) {
    this.canvas = cfg.canvas;
    this.seed = cfg.seed;
    this.size = shapesSplitSize(split, cfg.count);
  }

  /** The composition and jitter of item i (what the image shows, for evaluators). */
  spec(i: number): ReturnType<typeof shapeItem> {
    checkIndex(i, this.size);
    return shapeItem(i, this.split, this.seed);
  }

  async get(i: number, draw?: CaptionDraw): Promise<DatasetItem> {
    const spec = this.spec(i);
    const rgb = renderShape(spec, this.canvas);
    return {
      rgb,
      width: this.canvas,
      height: this.canvas,
      caption: pickCaption(shapeCaptions(spec), i, draw),
    };
  }

  async captions(i: number): Promise<string[]> {
    return shapeCaptions(this.spec(i));
  }

  key(i: number): string {
    checkIndex(i, this.size);
    return `shapes/${this.split}/${i}`;
  }
}
