// `dalle bench sharding [--json] [--preset shapes] [--steps 30] [--url nats://…]`
//
// The flat layout vs parameters sharded within hosts (train.parameterSharding 'host'), both on 2 hosts ×
// 2 ranks: the preset's transformer, four ranks in this process over a real nats-server, the same
// synthetic batches for both, PowerSGD on from the first step. Per layout: the loss over the last steps
// (the layouts should train alike: "at equal loss"), the state each rank holds (parameters, gradient,
// AdamW, PowerSGD; from the runtimes, next to the plan's count from the shapes alone), the gradient bytes
// leaving a host per step (each rank's PowerSGD payload through the all-reduce's fan-out,
// activities/layout-plan.ts) and the payload a rank sends to and receives from the other ranks of its host
// (its host group's counters), and the wall time of a step.
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { PresetName, resolveSpec, type RunSpec } from '../config/index.ts';
import { initTfBackend, transformerParamSpecs } from '../model/index.ts';
import { openStores } from '../store/index.ts';
import { crossHostBytes, planLayout } from '../activities/layout-plan.ts';
import type { RankMemory } from '../activities/rank-runtime.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { closeRanks, openRanks, trainRanks, type StepRecord } from './lib/in-process-ranks.ts';
import { startServer } from './lib/nats-server.ts';

export const cli = command({
  name: 'bench sharding',
  summary:
    'flat vs parameters sharded within hosts on 2 hosts × 2 ranks: loss, memory per rank, bytes across hosts',
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    preset: { type: 'string', value: 'NAME', help: 'whose transformer (default shapes; tiny is quicker)' },
    steps: { type: 'string', value: 'N', help: 'training steps per layout (default 30)' },
    url: { type: 'string', value: 'nats://…', help: 'an existing nats-server (default: start one)' },
  },
});

const HOSTS = ['a', 'b', 'a', 'b'];
const LAST = 5;

interface LayoutFigures {
  layout: 'flat' | 'sharded';
  lossFirst: number;
  lossLast: number;
  memoryPerRank: { params: number; grads: number; optimizer: number; powersgd: number; total: number };
  plannedPerRank: number;
  crossHostBytesPerStep: number;
  plannedCrossHostBytesPerStep: number;
  /** Rank 0's payload bytes within its host per step: published, used. */
  hostBytesPerStep: { sent: number; received: number };
  msPerStep: number;
}

async function measure(
  url: string,
  spec: RunSpec,
  steps: number,
  layout: 'flat' | 'sharded',
): Promise<LayoutFigures> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-sharding-'));
  try {
    const { checkpoints } = await openStores({ dir });
    const runId = `bench-${layout}-${process.pid}`;
    const hostIds = layout === 'sharded' ? HOSTS : undefined;
    const ranks = await openRanks({ url, spec, hostIds, checkpoints, runId });
    let records: StepRecord[];
    let memory: RankMemory[];
    try {
      records = await trainRanks(ranks, spec, 0, steps);
      memory = ranks.runtimes.map((r) => r.memory());
    } finally {
      await closeRanks(ranks);
    }
    const plan = planLayout(transformerParamSpecs(spec.transformer, spec.dvae), spec.powersgd, 2, 2);
    // Host 0 is ranks 0 and 2; what its ranks send through their groups' fan-out leaves the host.
    const host0 = [0, 2];
    const leaving = (r: StepRecord) =>
      host0.reduce(
        (n, k) =>
          n +
          (layout === 'flat'
            ? crossHostBytes(r.ranks[k]!.bytesSent, 4, 2, 1)
            : crossHostBytes(r.ranks[k]!.bytesSent, 2, 1, 1)),
        0,
      );
    const tail = records.slice(-LAST);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const sum = (m: RankMemory) => m.params + m.grads + m.optimizer + m.powersgd;
    const worst = memory.reduce((a, m) => (sum(m) > sum(a) ? m : a));
    return {
      layout,
      lossFirst: records[0]!.loss,
      lossLast: mean(tail.map((r) => r.loss)),
      memoryPerRank: { ...worst, total: sum(worst) },
      plannedPerRank: layout === 'flat' ? plan.flat.total : plan.sharded.total,
      crossHostBytesPerStep: mean(tail.map(leaving)),
      plannedCrossHostBytesPerStep:
        layout === 'flat' ? plan.crossHostPerStep.flat : plan.crossHostPerStep.sharded,
      hostBytesPerStep: {
        sent: mean(tail.map((r) => r.ranks[0]!.hostBytes.sent)),
        received: mean(tail.map((r) => r.ranks[0]!.hostBytes.received)),
      },
      msPerStep: mean(tail.map((r) => r.ms)),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  const steps = read.int('steps', values.steps, LAST + 1) ?? 30;
  const preset = read.choice('preset', values.preset, PresetName.options) ?? 'shapes';
  const spec = resolveSpec({ preset, powersgd: { startIter: 0 }, train: { worldSize: 4 } });
  await initTfBackend();
  const server = values.url ? undefined : await startServer();
  const url = values.url ?? server!.url;
  const load = loadavg()[0]!;
  try {
    const flat = await measure(url, spec, steps, 'flat');
    const sharded = await measure(url, spec, steps, 'sharded');
    const out = {
      preset: spec.preset,
      steps,
      powersgdRank: spec.powersgd.rank,
      cores: cpus().length,
      loadAvg: load,
      flat,
      sharded,
    };
    if (values.json) return void console.log(JSON.stringify(out, null, 2));
    const kB = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
    console.log(
      `bench sharding: ${spec.preset} transformer, 2 hosts × 2 ranks in one process, ${steps} steps, PowerSGD rank ${spec.powersgd.rank} (sharded: ${Math.ceil(spec.powersgd.rank / 2)} per slice), load ${load.toFixed(1)} on ${cpus().length} cores`,
    );
    const row = (k: string, f: (x: LayoutFigures) => string) =>
      console.log(`  ${k.padEnd(38)} ${f(flat).padStart(14)} ${f(sharded).padStart(14)}`);
    row('', (x) => x.layout);
    row(`loss, step 1 → mean of last ${LAST}`, (x) => `${x.lossFirst.toFixed(3)} → ${x.lossLast.toFixed(3)}`);
    row('per rank: parameters', (x) => kB(x.memoryPerRank.params));
    row('per rank: gradient', (x) => kB(x.memoryPerRank.grads));
    row('per rank: AdamW (m, v, EMA, master)', (x) => kB(x.memoryPerRank.optimizer));
    row('per rank: PowerSGD error buffers + Q', (x) => kB(x.memoryPerRank.powersgd));
    row('per rank: total (planned)', (x) => `${kB(x.memoryPerRank.total)} (${kB(x.plannedPerRank)})`);
    row(
      'leaving a host per step (planned)',
      (x) => `${kB(x.crossHostBytesPerStep)} (${kB(x.plannedCrossHostBytesPerStep)})`,
    );
    row('within a host per rank per step: sent', (x) => kB(x.hostBytesPerStep.sent));
    row('within a host per rank per step: received', (x) => kB(x.hostBytesPerStep.received));
    row('wall time per step', (x) => `${x.msPerStep.toFixed(0)} ms`);
  } finally {
    server?.stop();
  }
}
