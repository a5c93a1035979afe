// `dalle bench powersgd [--json] [--steps 5] [--warmup 3] [--paper-rank 8] [--skip-paper]`
//
// PowerSGD's compression math per step (M ← e + g, P = MQ, Householder, Q = MᵀP̂, decompress, error) for
// the `shapes` models and for one paper-12b transformer layer's four matrices, on a one-rank group (no
// network: what is timed is the compute a rank adds to every step), with bytes raw vs sent, next to the
// time of copying the same raw bytes once, measured in the same run (the ratio says how many memory
// copies' worth of time compression costs). paper-12b runs at a small rank (--paper-rank, default 8)
// because JavaScript on this machine does well under 1 GFLOP/s; its bytes are also given at the paper's
// r = 896.
import { cpus, loadavg } from 'node:os';
import { loadSpec } from '../config/index.ts';
import { planCompression, PowerSgd, soloGroup } from '../collective/index.ts';
import { dvaeParamSpecs, type ParamSpec, transformerParamSpecs } from '../model/index.ts';
import type { PowerSgdConfig } from '../config/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';

export const cli = command({
  name: 'bench powersgd',
  summary: "PowerSGD's compression math per step (shapes models, one paper-12b layer): time and bytes",
  options: {
    json: { type: 'boolean', help: 'print the figures as JSON' },
    steps: { type: 'string', value: 'N', help: 'timed steps (default 5)' },
    warmup: { type: 'string', value: 'N', help: 'untimed steps first (default 3)' },
    'paper-rank': {
      type: 'string',
      value: 'r',
      help: "PowerSGD rank of the paper-12b layer (default 8; the paper's is 896)",
    },
    'skip-paper': { type: 'boolean', help: 'skip the paper-12b layer' },
  },
});

const numel = (s: ParamSpec) => s.shape.reduce((a, b) => a * b, 1);

function fill(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = (seed * 2654435761) >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = ((s >>> 9) / 2 ** 23 - 0.5) * 1e-3;
  }
  return a;
}

/** Median time of copying every gradient once into preallocated buffers. */
function copyMs(grads: Float32Array[], reps = 5): number {
  const dst = grads.map((g) => new Float32Array(g.length));
  const t: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    for (let i = 0; i < grads.length; i++) dst[i]!.set(grads[i]!);
    t.push(performance.now() - t0);
  }
  return t.sort((a, b) => a - b)[Math.floor(reps / 2)]!;
}

interface Row {
  model: string;
  params: number;
  compressedMatrices: number;
  rank: number;
  wire: string;
  bytesRaw: number;
  bytesSent: number;
  compressionRate: number;
  msPerStep: number;
  copyMs: number;
  ratioToCopy: number;
  samplesMs: number[];
}

async function measure(
  model: string,
  specs: ParamSpec[],
  cfg: PowerSgdConfig,
  steps: number,
  warmup: number,
): Promise<Row> {
  const psgd = new PowerSgd(specs, { ...cfg, startIter: 0 }, { rank: 0, worldSize: 1, seed: 0 });
  const group = soloGroup();
  const grads = specs.map((s, i) => fill(numel(s), i + 1));
  const samples: number[] = [];
  for (let s = 0; s < warmup + steps; s++) {
    const r = await psgd.reduce(group, grads, s);
    if (s >= warmup) samples.push(r.stats.ms); // the first steps run before the JIT has compiled the kernels
  }
  const copy = copyMs(grads);
  const ms = [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)]!;
  return {
    model,
    params: psgd.plan.numel,
    compressedMatrices: psgd.plan.params.filter((p) => p.compressed).length,
    rank: cfg.rank,
    wire: cfg.wire,
    bytesRaw: psgd.plan.bytesRaw,
    bytesSent: psgd.plan.bytesSent,
    compressionRate: psgd.plan.compressionRate,
    msPerStep: ms,
    copyMs: copy,
    ratioToCopy: ms / copy,
    samplesMs: samples,
  };
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  const json = !!values.json;
  const steps = read.int('steps', values.steps, 1) ?? 5;
  const warmup = read.int('warmup', values.warmup, 0) ?? 3;
  const paperRank = read.int('paper-rank', values['paper-rank'], 1) ?? 8;
  const shapes = loadSpec('shapes');
  const paper = loadSpec('paper-12b');
  const rows: Row[] = [];
  rows.push(
    await measure(
      'shapes transformer',
      transformerParamSpecs(shapes.transformer, shapes.dvae),
      shapes.powersgd,
      steps,
      warmup,
    ),
  );
  rows.push(await measure('shapes dvae', dvaeParamSpecs(shapes.dvae), shapes.powersgd, steps, warmup));
  rows.push(
    await measure(
      'shapes transformer, fp16 wire',
      transformerParamSpecs(shapes.transformer, shapes.dvae),
      { ...shapes.powersgd, wire: 'fp16' },
      steps,
      warmup,
    ),
  );
  const layer = transformerParamSpecs(paper.transformer, paper.dvae).filter(
    (s) => s.name.startsWith('layer0.') && s.kind === 'matrix',
  );
  const atPaperRank = planCompression(layer, paper.powersgd);
  if (!values['skip-paper']) {
    rows.push(
      await measure(
        `paper-12b layer (4 matrices, d=${paper.transformer.dModel})`,
        layer,
        { ...paper.powersgd, rank: paperRank },
        1,
        0,
      ),
    );
  }
  const report = {
    bench: 'powersgd',
    machine: { cpus: cpus().length, loadavg1: loadavg()[0] },
    steps,
    warmup,
    rows,
    paper12bLayerAtR896: {
      rank: paper.powersgd.rank,
      wire: paper.powersgd.wire,
      bytesRaw: atPaperRank.bytesRaw,
      bytesSent: atPaperRank.bytesSent,
      compressionRate: atPaperRank.compressionRate,
    },
  };
  if (json) {
    console.log(JSON.stringify(report));
    return;
  }
  console.log(
    `PowerSGD compress+decompress per step on one rank (median of ${steps} after ${warmup} warm-up steps; paper layer: 1 step); load ${report.machine.loadavg1.toFixed(1)} on ${report.machine.cpus} cores`,
  );
  console.log(
    'model                                    params    r wire   raw MB  sent MB  rate   ms/step  copy ms  ×copy',
  );
  for (const r of rows) {
    console.log(
      `${r.model.padEnd(40)} ${(r.params / 1e6).toFixed(2).padStart(7)}M ${String(r.rank).padStart(4)} ${r.wire} ${(r.bytesRaw / 1e6).toFixed(2).padStart(8)} ${(r.bytesSent / 1e6).toFixed(3).padStart(8)} ${(r.compressionRate * 100).toFixed(1).padStart(5)}% ${r.msPerStep.toFixed(1).padStart(9)} ${r.copyMs.toFixed(2).padStart(8)} ${r.ratioToCopy.toFixed(0).padStart(6)}`,
    );
  }
  const p = report.paper12bLayerAtR896;
  console.log(
    `paper-12b layer at the paper's r = ${p.rank}, ${p.wire}: ${(p.bytesRaw / 1e6).toFixed(1)} MB raw → ${(p.bytesSent / 1e6).toFixed(1)} MB sent (${(p.compressionRate * 100).toFixed(1)} %)`,
  );
}
