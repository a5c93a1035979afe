// The seam between the service (queueing, batching, gRPC) and the model code (tokenizer, transformer
// sampling, dVAE decoding). The service only ever talks to these two interfaces; `tf-engine.ts` implements
// them over a published model bundle. Everything crossing the seam is plain typed arrays.

/** What a client may set per request, already validated (see request.ts). */
export interface SamplingParams {
  /** Softmax temperature > 0. */
  temperature: number;
  /** Keep the k most likely tokens; 0 = all. */
  topK: number;
  /** Nucleus mass in (0, 1]; 1 = all. */
  topP: number;
  /** Classifier-free guidance scale ≥ 0; 1 = off. */
  guidanceScale: number;
}

/** One image to sample: a text row plus its own seed. Rows of one session may come from many requests. */
export interface RowSpec extends SamplingParams {
  /** Text token ids, [textLen] (padding 0). */
  text: Int32Array;
  /** uint32; the row's randomness is a pure function of (seed, token position), never of its batch. */
  seed: number;
}

/** Rows of the batched forward pass a row takes: a guided row also carries its empty-caption partner. */
export function rowCost(r: Pick<RowSpec, 'guidanceScale'>): number {
  return r.guidanceScale === 1 ? 1 : 2;
}

/** A finished row: its image tokens and how likely the sampler found them. */
export interface RowResult {
  /** Image tokens in raster order, [grid²]. */
  tokens: Int32Array;
  /** Mean log-likelihood per token under the model at temperature 1 (a reranking score). */
  score: number;
}

/**
 * Rows sampled together: each `step()` runs ONE batched forward pass that advances every live row by one
 * image token, so concurrent requests share the cost. Rows all start at the same position and move in
 * lockstep; a cancelled row is dropped from the next forward pass (compute stops within one step).
 */
export interface SamplingSession {
  readonly rows: number;
  /** Image tokens per row (grid²). */
  readonly tokensPerRow: number;
  /** Tokens sampled so far for every live row (rows move in lockstep). */
  readonly position: number;
  /** Rows still being sampled. */
  readonly liveRows: number;
  /** True when no live row is left (all finished or cancelled). */
  readonly done: boolean;
  /** One forward pass for all live rows. Returns the rows that completed in it. */
  step(): { row: number; result: RowResult }[];
  /** Drops a row from every later step. Idempotent. */
  cancel(row: number): void;
  /** Releases the session's tensors (its KV cache). Idempotent. */
  dispose(): void;
}

/** Facts about a loaded model that requests are validated against and that clients see. */
export interface ModelFacts {
  name: string;
  version: number;
  /** Image side in pixels. */
  resolution: number;
  /** Token grid side; grid² tokens per image. */
  grid: number;
  /** dVAE codebook size K (the upper bound of top_k). */
  codebookSize: number;
  /** Text positions of the transformer. */
  textLen: number;
  preset: string;
  createdAt: string;
  /** The bundle has a reranker: `rerank` scores images and requests may ask for candidates. */
  reranker: boolean;
}

/** A loaded, ready-to-sample model. Owned by the model registry; disposed once no request holds it. */
export interface SamplingModel {
  readonly facts: ModelFacts;
  /** Caption → text ids [textLen] (lowercased, BPE, truncated). Throws PromptError for an unusable caption. */
  encodePrompt(prompt: string): Int32Array;
  /** Starts a batched session over rows (≥ 1). */
  start(rows: RowSpec[]): SamplingSession;
  /** Image tokens [n, grid²] → RGB pixels [n, resolution, resolution, 3]. */
  decode(tokens: Int32Array, n: number): Uint8Array;
  /** The reranker's score of each of n images against one caption's ids (from `encodePrompt`): cosines in
   *  [−1, 1]. Only when `facts.reranker`. */
  rerank(text: Int32Array, rgb: Uint8Array, n: number): Float32Array;
  /** Releases every tensor. */
  dispose(): void;
}

/** Builds a SamplingModel from a published bundle's bytes (kept as a function so the registry does not
 *  import tfjs itself and tests can count loads). */
export type ModelLoader = (
  bundle: Uint8Array,
  version: { name: string; version: number; createdAt: string },
) => Promise<SamplingModel>;
