// encodeDataset: between the stages. The tokenizer is trained on the training captions; each worker
// encodes a shard of the training images with the frozen dVAE (EMA weights, argmax tokens); the lead
// commits both as the run's `data` checkpoint, which stage 2 reads.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { RunSpec } from '../config/index.ts';
import { preprocessTransformer, trainTokenizer, type Dataset } from '../data/index.ts';
import { rngFor } from '../random/index.ts';
import { Dvae, initTfBackend } from '../model/index.ts';
import type { CheckpointManifest, CheckpointStore, PartRef } from '../store/index.ts';
import { dataset } from './datasets.ts';
import { DATA_STAGE, DATA_STEP, shardRange } from './encoded.ts';
import { emaParams } from './ema-params.ts';
import type { EncodeShardInput } from '../contract/index.ts';

const ENCODE_CHUNK = 64;

/** The dVAE with the EMA weights of a committed stage-1 checkpoint. */
export async function frozenDvae(
  checkpoints: CheckpointStore,
  manifest: CheckpointManifest,
  spec: RunSpec,
): Promise<Dvae> {
  await initTfBackend();
  return Dvae.fromParams(spec.dvae, await emaParams(checkpoints, manifest, 'dvae', spec));
}

export async function prepareTokenizer(
  checkpoints: CheckpointStore,
  input: { runId: string; spec: RunSpec },
): Promise<PartRef> {
  const ds = await dataset(input.spec.dataset);
  if (!ds.size)
    throw ApplicationFailure.nonRetryable(
      `dataset ${input.spec.dataset.kind} has no items to train the tokenizer on`,
      'DatasetError',
    );
  const tok = await trainTokenizer(ds, input.spec.transformer.vocabSize);
  const bytes = new TextEncoder().encode(JSON.stringify(tok.toJSON()));
  return checkpoints.putPart(input.runId, DATA_STAGE, DATA_STEP, 'tokenizer', bytes);
}

export async function encodeShard(checkpoints: CheckpointStore, input: EncodeShardInput): Promise<PartRef> {
  const { runId, spec, shard, shards, dvaeStep } = input;
  const m = await checkpoints.manifestAt(runId, 'dvae', dvaeStep);
  if (!m) throw new Error(`dVAE checkpoint ${runId}/dvae/${dvaeStep} not found`);
  const dvae = await frozenDvae(checkpoints, m, spec);
  try {
    const ds = await dataset(spec.dataset);
    const { start, end } = shardRange(shard, shards, ds.size);
    const tokens = await encodeItems(dvae, ds, spec, start, end, (done) =>
      Context.current().heartbeat({ encoded: done, of: end - start }),
    );
    return checkpoints.putPart(runId, DATA_STAGE, DATA_STEP, `tokens${shard}`, new Uint8Array(tokens.buffer));
  } finally {
    dvae.dispose();
  }
}

/** dVAE tokens [end − start, g²] of dataset items start..end−1, each through one fixed transformer-pipeline
 *  crop keyed by its index (what stage 2 trains on). `progress` gets the items done after each chunk. */
export async function encodeItems(
  dvae: Dvae,
  ds: Dataset,
  spec: RunSpec,
  start: number,
  end: number,
  progress: (done: number) => void = () => undefined,
): Promise<Int32Array> {
  const res = spec.dvae.resolution;
  const per = spec.dvae.grid * spec.dvae.grid;
  const tokens = new Int32Array((end - start) * per);
  for (let at = start; at < end; at += ENCODE_CHUNK) {
    const n = Math.min(ENCODE_CHUNK, end - at);
    const images = new Uint8Array(n * res * res * 3);
    for (let j = 0; j < n; j++) {
      const item = await ds.get(at + j, { seed: spec.train.seed, epoch: 0 });
      images.set(
        preprocessTransformer(
          item.rgb,
          item.width,
          item.height,
          res,
          rngFor(spec.train.seed, 'encode', at + j),
        ),
        j * res * res * 3,
      );
    }
    tokens.set(dvae.encode(images), (at - start) * per);
    progress(at + n - start);
  }
  return tokens;
}

export async function commitEncoded(
  checkpoints: CheckpointStore,
  input: { runId: string; spec: RunSpec; parts: PartRef[]; shards: number },
): Promise<void> {
  const ds = await dataset(input.spec.dataset);
  await checkpoints.commit({
    runId: input.runId,
    stage: DATA_STAGE,
    step: DATA_STEP,
    parts: input.parts,
    meta: { shards: input.shards, size: ds.size, tokensPerImage: input.spec.dvae.grid ** 2 },
  });
}
