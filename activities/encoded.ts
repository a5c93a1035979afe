// Stage 2's inputs, made once by encodeDataset and stored as checkpoint parts of the pseudo-stage `data`:
// the BPE tokenizer trained on the captions, and every training image's dVAE tokens (argmax of the
// encoder logits, docs/model.md), sharded. Loaded once per worker process and run.
import { Tokenizer } from '../data/index.ts';
import type { CheckpointStore } from '../store/index.ts';

export const DATA_STAGE = 'data';
export const DATA_STEP = 0;

export interface EncodedData {
  tokenizer: Tokenizer;
  /** [datasetSize, grid²] */
  tokens: Int32Array;
  tokensPerImage: number;
}

const cache = new Map<string, Promise<EncodedData>>();

export function shardRange(shard: number, shards: number, n: number): { start: number; end: number } {
  return { start: Math.floor((shard * n) / shards), end: Math.floor(((shard + 1) * n) / shards) };
}

async function load(checkpoints: CheckpointStore, runId: string): Promise<EncodedData> {
  const m = await checkpoints.manifestAt(runId, DATA_STAGE, DATA_STEP);
  if (!m) throw new Error(`run ${runId} has no encoded dataset (encodeDataset has not committed)`);
  const tokenizer = Tokenizer.fromJSON(
    JSON.parse(new TextDecoder().decode(await checkpoints.loadPart(m, 'tokenizer'))),
  );
  const shards = Number(m.meta.shards);
  const size = Number(m.meta.size);
  const tokensPerImage = Number(m.meta.tokensPerImage);
  const tokens = new Int32Array(size * tokensPerImage);
  for (let s = 0; s < shards; s++) {
    const bytes = await checkpoints.loadPart(m, `tokens${s}`);
    const { start } = shardRange(s, shards, size);
    tokens.set(
      new Int32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)),
      start * tokensPerImage,
    );
  }
  return { tokenizer, tokens, tokensPerImage };
}

export function encodedData(checkpoints: CheckpointStore, runId: string): Promise<EncodedData> {
  let p = cache.get(runId);
  if (!p) {
    p = load(checkpoints, runId);
    p.catch(() => cache.delete(runId));
    cache.set(runId, p);
  }
  return p;
}
