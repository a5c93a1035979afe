// `dalle bench checkpoint-samples [--preset shapes] [--steps 5] [--json]`
//
// What the sample grids drawn at checkpoints cost a stage, on this process's backend (DALLE_BACKEND picks):
//   - a training step of each stage at the preset's per-rank batch (batchSize / worldSize), compute and
//     optimizer only: no all-reduce and no data loading, so the fraction below is an upper bound;
//   - drawing one checkpoint's grid (the median of three): the dVAE's reconstructions, and the transformer's
//     samples of train.samplePrompts decoded by a dVAE;
//   - the share of the stage: grid / (checkpointEvery × step + grid).
// Figures only, never pass/fail: the machines are shared and noisy, so quote ratios from one run.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { renderCheckpointSamples } from '../activities/checkpoint-samples.ts';
import { prepareTokenizer } from '../activities/encode-dataset.ts';
import { DATA_STAGE, DATA_STEP } from '../activities/encoded.ts';
import { stageBatches } from '../activities/batches.ts';
import { dataset } from '../activities/datasets.ts';
import { createStageTrainer } from '../activities/stage-trainer.ts';
import { loadSpec, type RunSpec } from '../config/index.ts';
import type { StageName } from '../contract/index.ts';
import { initTfBackend } from '../model/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { openStores, type CheckpointStore } from '../store/index.ts';

export const cli = command({
  name: 'bench checkpoint-samples',
  summary: "what drawing a checkpoint's sample grid costs each stage of a preset, on this process's backend",
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    preset: { type: 'string', value: 'tiny|shapes', help: 'the preset (default shapes)' },
    steps: { type: 'string', value: 'N', help: 'timed training steps per stage (default 5)' },
  },
  notes: ['DALLE_BACKEND picks the tfjs backend (tensorflow, wasm, cpu).'],
});

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Mean seconds of a training step (the first, warm-up step excluded). */
async function stepSeconds(
  stage: StageName,
  spec: RunSpec,
  checkpoints: CheckpointStore,
  runId: string,
  steps: number,
) {
  const W = spec.train.worldSize;
  const trainer = await createStageTrainer(stage, spec, W);
  try {
    const source = await stageBatches(stage, spec, checkpoints, runId);
    let t = 0;
    for (let s = 0; s <= steps; s++) {
      const batch = await source.batch(s, 0, W);
      const t0 = performance.now();
      const g = trainer.computeGradients(batch, s, 0);
      trainer.applyGradients(g.grads, s, g.loss);
      if (s > 0) t += performance.now() - t0;
    }
    return t / steps / 1000;
  } finally {
    trainer.dispose();
  }
}

async function gridSeconds(stage: StageName, spec: RunSpec, checkpoints: CheckpointStore, runId: string) {
  const trainer = await createStageTrainer(stage, spec, 1);
  try {
    const ms: number[] = [];
    for (let k = 0; k < 3; k++) {
      const g = await renderCheckpointSamples({
        runId,
        stage,
        spec,
        ema: () => trainer.exportParams('ema'),
        checkpoints,
      });
      if (!g) throw new Error(`the ${spec.preset} preset draws no ${stage} grid`);
      ms.push(g.meta.ms);
    }
    return median(ms) / 1000;
  } finally {
    trainer.dispose();
  }
}

/** What the transformer's grid needs from a run: a committed dVAE checkpoint and the encoded data. */
async function fakeRun(spec: RunSpec, checkpoints: CheckpointStore, runId: string): Promise<void> {
  const dvae = await createStageTrainer('dvae', spec, 1);
  const params = await checkpoints.putPart(runId, 'dvae', spec.dvae.steps, 'params', dvae.saveState());
  dvae.dispose();
  await checkpoints.commit({ runId, stage: 'dvae', step: spec.dvae.steps, parts: [params] });
  const tok = await prepareTokenizer(checkpoints, { runId, spec });
  // Image tokens: zeros for every item (timing does not depend on them).
  const size = (await dataset(spec.dataset)).size;
  const tokens = await checkpoints.putPart(
    runId,
    DATA_STAGE,
    DATA_STEP,
    'tokens0',
    new Uint8Array(size * spec.dvae.grid ** 2 * 4),
  );
  await checkpoints.commit({
    runId,
    stage: DATA_STAGE,
    step: DATA_STEP,
    parts: [tok, tokens],
    meta: { shards: 1, size, tokensPerImage: spec.dvae.grid ** 2 },
  });
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  const preset = read.choice('preset', values.preset, ['tiny', 'shapes'] as const) ?? 'shapes';
  const steps = read.int('steps', values.steps, 1) ?? 5;
  const spec = loadSpec(preset);
  const backend = await initTfBackend();
  const dir = mkdtempSync(join(tmpdir(), 'bench-samples-'));
  try {
    const { checkpoints } = await openStores({ dir });
    const runId = `bench-${process.pid}`;
    await fakeRun(spec, checkpoints, runId);
    const rows = [];
    for (const stage of ['dvae', 'transformer'] as const) {
      const step = await stepSeconds(stage, spec, checkpoints, runId, steps);
      const grid = await gridSeconds(stage, spec, checkpoints, runId);
      const between = spec.train.checkpointEvery * step;
      rows.push({ stage, stepSeconds: step, gridSeconds: grid, share: grid / (between + grid) });
    }
    const result = {
      preset: preset,
      backend,
      checkpointEvery: spec.train.checkpointEvery,
      stages: rows,
    };
    if (values.json) console.log(JSON.stringify(result, null, 2));
    else {
      console.log(
        `checkpoint samples, preset ${preset}, backend ${backend}, a grid every ${spec.train.checkpointEvery} steps`,
      );
      for (const r of rows)
        console.log(
          `  ${r.stage.padEnd(11)} step ${(r.stepSeconds * 1000).toFixed(0).padStart(6)} ms   grid ${(r.gridSeconds * 1000).toFixed(0).padStart(6)} ms   share of the stage ≤ ${(r.share * 100).toFixed(2)} %`,
        );
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
