// A published model: everything the sampler needs, in one object. The weight sections are model/state-io
// blobs (named Float32Arrays, EMA weights) written by the publishModel activity; this file only fixes the
// container, so store/ stays free of tfjs.
import { RunSpec } from '../config/index.ts';
import { BadContainerError, packSections, unpackSections } from './sections.ts';

export interface ModelBundle {
  /** The run spec the model was trained with (architecture, tokenizer length, grid…). */
  spec: RunSpec;
  /** The BPE tokenizer as its own JSON (data/tokenizer.ts `toJSON()`). */
  tokenizer: unknown;
  /** model/state-io blob of the dVAE weights (decoder is what sampling needs; the encoder rides along). */
  dvae: Uint8Array;
  /** model/state-io blob of the transformer weights. */
  transformer: Uint8Array;
  /** Free-form facts: run id, steps, losses. */
  meta: Record<string, unknown>;
}

const json = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));

export function encodeBundle(b: ModelBundle): Uint8Array {
  return packSections({
    'spec.json': json(b.spec),
    'tokenizer.json': json(b.tokenizer),
    'meta.json': json(b.meta),
    dvae: b.dvae,
    transformer: b.transformer,
  });
}

export function decodeBundle(bytes: Uint8Array): ModelBundle {
  const s = unpackSections(bytes);
  for (const k of ['spec.json', 'tokenizer.json', 'meta.json', 'dvae', 'transformer']) {
    if (!s[k]) throw new BadContainerError(`model bundle lacks section '${k}'`);
  }
  const parse = (k: string): unknown => {
    try {
      return JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(s[k]));
    } catch (e) {
      throw new BadContainerError(`model bundle section '${k}' is not JSON: ${(e as Error).message}`);
    }
  };
  const spec = RunSpec.safeParse(parse('spec.json'));
  if (!spec.success) throw new BadContainerError(`model bundle spec is invalid: ${spec.error.message}`);
  return {
    spec: spec.data,
    tokenizer: parse('tokenizer.json'),
    meta: (parse('meta.json') ?? {}) as Record<string, unknown>,
    dvae: s.dvae!,
    transformer: s.transformer!,
  };
}
