// What a run measures about its model at each checkpoint (eval/ computes it; rank 0 reports it with its
// progress; `dalle status --json` and the demo show it). Plain JSON: it travels in signals and workflow state.

/** Share of images judged right per attribute, and on all four at once. */
export interface AttributeAccuracy {
  color: number;
  shape: number;
  size: number;
  position: number;
  all: number;
}

/** Which validation images a number was measured on (eval/validation.ts). */
export type ValidationName = 'seen' | 'heldOut' | 'train';

/** One checkpoint's measurements (plain JSON: it travels in progress signals and status output). */
export interface QualityPoint {
  stage: 'dvae' | 'transformer';
  step: number;
  /** Wall clock when measured, ms since the epoch (the demo plots against training time). */
  at: number;
  /** Cost of the measurement, s. */
  seconds: number;
  dvae?: {
    /** Which validation images were reconstructed. */
    split: ValidationName;
    images: number;
    codesUsed: number;
    perplexity: number;
    mse: number;
    /** Shapes set: reconstructions judged right, per attribute and all four. */
    accuracy?: AttributeAccuracy;
    /** Shapes set: colours whose reconstructions are mostly judged right (of 6). */
    colorsDistinct?: number;
  };
  transformer?: {
    /** nats per image token, per validation set (see caption-information.ts). */
    captionInformation: Partial<Record<ValidationName, number>>;
    /** Shapes set: plain samples judged right, n prompts per group. */
    samples?: { n: number; seen: AttributeAccuracy; heldOut: AttributeAccuracy };
  };
}
