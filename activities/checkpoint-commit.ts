// A checkpoint of a segment: each rank stores its PowerSGD state, rank 0 the model state, then rank 0
// commits the manifest once every rank's part is stored. The commit's barrier is one all-reduce that also
// carries every rank's part reference (an all-gather) and rank 0's decision to end the segment here for a
// world-size change, so all ranks stop at the same checkpoint.
import { specHash } from '../config/index.ts';
import type { Group } from '../collective/index.ts';
import type { CheckpointStore, PartRef } from '../store/index.ts';
import type { TrainShardInput } from '../contract/index.ts';
import type { CheckpointExtras } from './checkpoint-extras.ts';
import type { RankRuntime } from './rank-runtime.ts';

/** Rank r writes the sha256 (as 16-bit words, exact in float32) and byte count of its j-th part into slot
 *  (r, j), the others write zeros, so the sum is every rank's references on every rank; one more slot
 *  carries rank 0's `resizeTo` (0: go on). `names(r)` names rank r's parts (at most `perRank`). */
async function gatherPartRefs(
  group: Group,
  step: number,
  mine: PartRef[],
  names: (rank: number) => string[],
  perRank: number,
  resizeTo: number,
): Promise<{ refs: PartRef[]; resizeTo: number }> {
  const SLOT = 16 + 2;
  const { rank, worldSize } = group;
  const at = (r: number, j: number) => (r * perRank + j) * SLOT;
  const v = new Float32Array(worldSize * perRank * SLOT + 1);
  mine.forEach((ref, j) => {
    for (let i = 0; i < 16; i++) v[at(rank, j) + i] = parseInt(ref.sha256.slice(i * 4, i * 4 + 4), 16);
    v[at(rank, j) + 16] = Math.floor(ref.bytes / 0x10000);
    v[at(rank, j) + 17] = ref.bytes % 0x10000;
  });
  if (rank === 0) v[v.length - 1] = resizeTo;
  const sum = await group.allReduce(v, step, 'ckpt');
  const refs = Array.from({ length: worldSize }, (_, r) =>
    names(r).map((name, j) => ({
      name,
      sha256: Array.from({ length: 16 }, (_, i) => sum[at(r, j) + i]!.toString(16).padStart(4, '0')).join(''),
      bytes: sum[at(r, j) + 16]! * 0x10000 + sum[at(r, j) + 17]!,
    })),
  ).flat();
  return { refs, resizeTo: sum[v.length - 1]! };
}

export interface CheckpointFacts {
  step: number;
  /** Global loss of the step that ends here, and of every step since the previous checkpoint. */
  loss: number;
  losses: number[];
  backend: string;
  /** Rank 0's decision: the world size the next segment should have (0: none). */
  resizeTo: number;
}

/** Stores this step's checkpoint (rank 0 commits once every rank's parts are stored: no rank's reference
 *  exists before its part does), with rank 0's `extras` (curves, sample grid) when given. Returns the
 *  agreed `resizeTo` (0: the segment goes on). */
export async function saveCheckpoint(
  checkpoints: CheckpointStore,
  input: TrainShardInput,
  runtime: RankRuntime,
  group: Group,
  facts: CheckpointFacts,
  extras?: () => Promise<CheckpointExtras>,
): Promise<number> {
  const { runId, stage, worldSize } = input;
  const { step } = facts;
  const { mine, params } = await runtime.saveParts(step);
  const more = params && extras ? await extras() : undefined;
  const names = (r: number) => runtime.partNames(r);
  const perRank = Math.max(...Array.from({ length: worldSize }, (_, r) => names(r).length));
  const { refs, resizeTo } = await gatherPartRefs(group, step, mine, names, perRank, facts.resizeTo);
  if (params)
    await checkpoints.commit(
      {
        runId,
        stage,
        step,
        parts: [params, ...refs, ...(more?.parts ?? [])],
        meta: {
          worldSize,
          loss: facts.loss,
          losses: facts.losses,
          groupId: input.groupId,
          backend: facts.backend,
          specHash: specHash(input.spec),
          ...runtime.layoutMeta(),
          ...more?.meta,
        },
      },
      input.spec.train.keepCheckpoints,
    );
  return resizeTo;
}
