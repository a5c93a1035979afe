// The quality measurements a training run takes at every checkpoint, on its EMA weights (what publishing
// ships), over the validation sets of ./validation.ts:
//   dvae         codebook usage and reconstruction (MSE; on the shapes set, attribute accuracy and
//                distinct colours of the held-out images);
//   transformer  caption information per validation set and, on the shapes set, the attribute accuracy
//                of plain samples for seen and held-out prompts.
// Built once per segment by rank 0; `measure` takes about a second on the small presets.
import type { RunSpec } from '../config/index.ts';
import type { Tokenizer } from '../data/index.ts';
import { Dvae, Transformer } from '../model/index.ts';
import { captionInformation } from './caption-information.ts';
import { measureDvae } from './dvae-quality.ts';
import type { AttributeAccuracy, QualityPoint, ValidationName } from '../contract/index.ts';
import { sampleAccuracy } from './sample-accuracy.ts';
import { validationSets, type ValidationSet } from './validation.ts';

export interface QualityProbe {
  /** Measures the model of `exportEma()` (parameter arrays in spec order) at `step`. */
  measure(step: number, exportEma: () => Float32Array[]): QualityPoint;
  dispose(): void;
}

export interface ProbeOptions {
  /** Validation examples per set (0: no probe). */
  examples: number;
  /** Sampled prompts per group on the shapes set (0: none). */
  samples: number;
}

function round(v: number, digits = 4): number {
  return Number.isFinite(v) ? Number(v.toFixed(digits)) : v;
}

function roundAccuracy(a: AttributeAccuracy): AttributeAccuracy {
  return {
    color: round(a.color),
    shape: round(a.shape),
    size: round(a.size),
    position: round(a.position),
    all: round(a.all),
  };
}

/** The dVAE stage's probe. */
export async function dvaeProbe(spec: RunSpec, o: ProbeOptions): Promise<QualityProbe> {
  const sets = await validationSets(
    spec.dataset,
    Math.max(o.examples, 108),
    spec.dvae.resolution,
    spec.train.seed,
  );
  const set = sets.find((s) => s.name === 'heldOut') ?? sets[0]!;
  return {
    measure(step, exportEma) {
      const t0 = performance.now();
      const model = Dvae.fromParams(spec.dvae, exportEma());
      try {
        const q = measureDvae(model, set.images, {
          resolution: spec.dvae.resolution,
          codebookSize: spec.dvae.codebookSize,
          truth: set.truth,
        });
        return {
          stage: 'dvae',
          step,
          at: Date.now(),
          seconds: round((performance.now() - t0) / 1000, 3),
          dvae: {
            split: set.name,
            images: q.images,
            codesUsed: q.codesUsed,
            perplexity: round(q.perplexity, 2),
            mse: round(q.mse, 5),
            ...(q.shapes
              ? { accuracy: roundAccuracy(q.shapes.accuracy), colorsDistinct: q.shapes.colorsDistinct }
              : {}),
          },
        };
      } finally {
        model.dispose();
      }
    },
    dispose() {},
  };
}

interface EncodedSet {
  name: ValidationName;
  text: Int32Array;
  image: Int32Array;
  n: number;
}

/** Text ids (no BPE dropout) and dVAE tokens of a validation set. */
export function encodeValidation(
  set: ValidationSet,
  dvae: Dvae,
  tokenizer: Tokenizer,
  textLen: number,
): EncodedSet {
  const text = new Int32Array(set.n * textLen);
  set.captions.forEach((c, i) => text.set(tokenizer.encode(c, textLen).ids, i * textLen));
  return { name: set.name, text, image: dvae.encode(set.images), n: set.n };
}

/** The transformer stage's probe, over the frozen dVAE (its EMA weights) and the run's tokenizer. */
export async function transformerProbe(
  spec: RunSpec,
  dvaeParams: Float32Array[],
  tokenizer: Tokenizer,
  o: ProbeOptions,
): Promise<QualityProbe> {
  const dvae = Dvae.fromParams(spec.dvae, dvaeParams);
  const sets = (await validationSets(spec.dataset, o.examples, spec.dvae.resolution, spec.train.seed)).map(
    (s) => encodeValidation(s, dvae, tokenizer, spec.transformer.textLen),
  );
  const shapes = spec.dataset.kind === 'shapes' && o.samples > 0;
  return {
    measure(step, exportEma) {
      const t0 = performance.now();
      const model = Transformer.fromArrays(spec.transformer, spec.dvae, exportEma());
      try {
        const info: Partial<Record<ValidationName, number>> = {};
        for (const s of sets)
          if (s.n >= 2) info[s.name] = round(captionInformation(model, s.text, s.image, s.n).information);
        const acc = shapes
          ? sampleAccuracy({
              model,
              tokenizer,
              decode: (t) => dvae.decode(t),
              canvas: spec.dvae.resolution,
              n: o.samples,
            })
          : undefined;
        return {
          stage: 'transformer',
          step,
          at: Date.now(),
          seconds: round((performance.now() - t0) / 1000, 3),
          transformer: {
            captionInformation: info,
            ...(acc
              ? { samples: { n: acc.n, seen: roundAccuracy(acc.seen), heldOut: roundAccuracy(acc.heldOut) } }
              : {}),
          },
        };
      } finally {
        model.dispose();
      }
    },
    dispose() {
      dvae.dispose();
    },
  };
}
