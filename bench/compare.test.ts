// `bench compare`'s `our net on torch` column: bench/anchor/anchor_step.py rebuilds our dVAE in PyTorch
// from its layout. Same parameter count and forward multiply-adds as model/dvae.ts for every config, or
// the figure would compare two networks again. Needs the anchor's environment (`dalle bench compare
// --install-anchor`); skipped, saying so, where it is not installed (CI).
// `--rounds`: every side timed in each round, ratios over rounds with their range, real child processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PACKAGE_ROOT } from '../config/package-root.ts';
import { dvaeForwardMacs, dvaeParameterCount } from '../model/index.ts';
import {
  anchorInstalled,
  anchorVenv,
  compareSpec,
  configNames,
  main,
  overRounds,
  pooled,
  runAnchor,
  type Comparison,
} from './compare.ts';
import { median, type SideResult } from './lib/compare-step.ts';

const venv = anchorVenv();
const skip = anchorInstalled(venv) ? false : `the anchor is not installed in ${venv}`;

test(
  'bench compare: our dVAE rebuilt in PyTorch has our parameters and forward multiply-adds',
  { skip },
  async () => {
    for (const config of configNames) {
      const d = compareSpec(config).dvae;
      const job = {
        model: 'dvae' as const,
        config,
        threads: 1,
        batch: 2,
        warmup: 0,
        steps: 1,
        kernels: false,
      };
      const r = await runAnchor(job, venv, 'ours');
      assert.equal(r.parameters, dvaeParameterCount(d), `${config}: parameters`);
      assert.equal(r.detail.forwardMacsPerItem, dvaeForwardMacs(d), `${config}: forward multiply-adds`);
      assert.equal(r.detail.network, 'ours');
      assert.equal(r.stepSec.length, 1);
    }
  },
);

const side = (stepSec: number[]): SideResult => ({
  impl: 'x',
  stepSec,
  cpuSec: stepSec.map((t) => t / 2),
  stepSecMedian: median(stepSec),
  trainFlopsPerItem: 1,
  parameters: 1,
  detail: {},
});

test('bench compare --rounds: a ratio is the median of the rounds, with their range', () => {
  // ours 0.1 s a step against the anchor's 0.2, 0.1 and 0.05 in three rounds: 2×, 1×, 0.5×.
  const rounds = [
    { ours: side([0.1]), anchor: side([0.2]) },
    { ours: side([0.1]), anchor: side([0.1]) },
    { ours: side([0.1]), anchor: side([0.05]) },
  ];
  assert.deepEqual(overRounds(rounds, 'ours', 'anchor'), { median: 1, range: [0.5, 2] });
  // A side no round timed gives no ratio, rather than NaN.
  assert.equal(overRounds(rounds, 'ours', 'ourNet'), undefined);
  // A side's figures pool every timed step of its rounds.
  const p = pooled([side([0.3, 0.1, 0.2]), side([0.5, 0.4])]);
  assert.deepEqual(p.stepSec, [0.3, 0.1, 0.2, 0.5, 0.4]);
  assert.equal(p.stepSecMedian, 0.3);
  assert.equal(p.cpuSec.length, 5);
});

test('bench compare --rounds 2 --baseline: each side runs in every round, the speed-up over rounds', async () => {
  const lines: string[] = [];
  const log = console.log;
  console.log = (...args: unknown[]) => void lines.push(args.join(' '));
  try {
    await main([
      '--configs=tiny',
      '--models=dvae',
      '--threads=1',
      '--batch=2',
      '--steps=2',
      '--warmup=1',
      '--rounds=2',
      '--no-anchor',
      `--baseline=${PACKAGE_ROOT}`,
      '--json',
    ]);
  } finally {
    console.log = log;
  }
  const report = JSON.parse(lines.at(-1)!) as { rounds: number; rows: Comparison[] };
  assert.equal(report.rounds, 2);
  const [row] = report.rows;
  assert.equal(report.rows.length, 1);
  // Two timed steps in each of two rounds, on both sides.
  assert.equal(row!.ours.stepSec.length, 4);
  assert.equal(row!.baseline!.stepSec.length, 4);
  const [lo, hi] = row!.speedupRange!;
  assert.ok(lo > 0 && lo <= row!.speedup! && row!.speedup! <= hi, `${lo} ≤ ${row!.speedup} ≤ ${hi}`);
  assert.equal(row!.anchor, undefined);
  assert.equal(row!.ratio, undefined);
  await assert.rejects(main(['--rounds=0', '--no-anchor']), /rounds/);
});
