// The demo's written report: report.json (every figure), report.md (what a reader looks at first: does the
// image follow the caption, samples, training), and the loss and quality charts it embeds.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RunSpec } from '../../config/index.ts';
import type { TrainStageResult } from '../../contract/index.ts';
import { summary, type CurvePoint, type EvalReport } from '../../eval/index.ts';
import { qualityLine } from '../../eval/quality-line.ts';
import { demoCurvesSection } from './demo-curves.ts';
import { lossCurvesSvg, qualityCurvesSvg } from './demo-render.ts';
import type { WatchedRun } from './demo-watch.ts';

/** What the demo did, for the report. */
export interface DemoOutcome {
  runId: string;
  /** When the demo started (ms since the epoch). */
  t0: number;
  minutes: number;
  /** The `--set path=value` flags the preset was trained with (none: the preset as it is). */
  sets?: readonly string[];
  backend: string;
  spec: RunSpec;
  training: WatchedRun;
  /** The prompts of the sample grid, in its row order. */
  samples: string[];
  evaluation: EvalReport;
  /** formatEvalTable(evaluation). */
  table: string;
  curves: CurvePoint[] | null;
}

const perMinute = (steps: number, seconds: number | null) => (seconds ? (60 * steps) / seconds : null);
const exposedShare = (r: { stepMs?: number; exposedCommMs?: number }) =>
  r.stepMs ? (r.exposedCommMs ?? 0) / r.stepMs : null;
const pctOrDash = (x: number | null) => (x === null ? '–' : `${(100 * x).toFixed(1)} %`);
const pct = (v: number) => `${(100 * v).toFixed(1)} %`;
const mb = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;

export type DemoReport = ReturnType<typeof demoReport>;

/** report.json. */
export function demoReport(o: DemoOutcome) {
  const { result, stageSeconds: secs } = o.training;
  const bytesRaw = result.dvae.bytesRaw + result.transformer.bytesRaw;
  const bytesSent = result.dvae.bytesSent + result.transformer.bytesSent;
  return {
    runId: o.runId,
    wallSeconds: (Date.now() - o.t0) / 1000,
    backend: o.backend,
    config: o.spec,
    steps: { dvae: result.dvae.step, transformer: result.transformer.step },
    secondsPerStage: {
      dvae: secs('dvae'),
      encode: secs('encode'),
      transformer: secs('transformer'),
      rerank: secs('rerank'),
      publish: secs('publish'),
    },
    stepsPerMinute: {
      dvae: perMinute(result.dvae.step, secs('dvae')),
      transformer: perMinute(result.transformer.step, secs('transformer')),
      rerank: result.rerank ? perMinute(result.rerank.step, secs('rerank')) : null,
    },
    /** Share of the ranks' step time spent waiting for the gradient exchange. */
    exposedCommunication: {
      dvae: exposedShare(result.dvae),
      transformer: exposedShare(result.transformer),
      rerank: result.rerank ? exposedShare(result.rerank) : null,
    },
    finalLoss: { dvae: result.dvae.loss, transformer: result.transformer.loss },
    restarts: result.restarts,
    kill: o.training.kill ?? null,
    gradients: { bytesRaw, bytesSent, compressionRate: bytesRaw ? 1 - bytesSent / bytesRaw : 0 },
    model: result.model,
    samples: o.samples,
    evaluation: summary(o.evaluation),
    quality: o.training.quality,
    samplingCurve: o.curves,
  };
}

/** Writes report.json, loss.svg, quality.svg and report.md into `outDir`. */
export function writeDemoReport(outDir: string, o: DemoOutcome): void {
  const report = demoReport(o);
  writeFileSync(join(outDir, 'report.json'), JSON.stringify(report, null, 2));
  writeFileSync(join(outDir, 'loss.svg'), lossCurvesSvg(o.training.losses));
  writeFileSync(join(outDir, 'quality.svg'), qualityCurvesSvg(o.training.quality, o.t0));
  writeFileSync(
    join(outDir, 'report.md'),
    [
      `# DALL-E demo run ${o.runId}`,
      '',
      ...captionSection(o),
      ...demoCurvesSection(o.curves, o.spec),
      '## Samples (held-out prompts first, then two seen ones)',
      '',
      '![grid](grid.png)',
      '',
      ...trainingSection(o, report),
    ].join('\n'),
  );
}

function captionSection(o: DemoOutcome): string[] {
  const e = o.evaluation;
  return [
    '## Does the image follow the caption?',
    '',
    `Held-out compositions (colour–shape pairs that never appear in any training image or caption): **${pct(e.heldOut.accuracy.all)}** of plain samples right on all four attributes; seen compositions ${pct(e.seen.accuracy.all)}; random image tokens ${pct(e.random.accuracy.all)}; the dVAE's own reconstructions of the held-out images ${pct(e.reconstruction.accuracy.all)} and of seen ones ${pct(e.seenReconstruction.accuracy.all)} (the ceilings); chance ${pct(e.chance.all)}. Temperature 1, no reranking, ${e.promptsPerGroup} prompts per group, judged from pixels.`,
    '',
    '```',
    o.table,
    '```',
    '',
    'Reference points measured on this machine class: this demo before the quality work (2026-12-01, dVAE 400 steps, transformer 300), held-out 1.9 % and seen 1.9 % right on all four; the same demo on 2026-12-02 before the dVAE weighted its edges, held-out 41.2 % and seen 54.2 % with held-out reconstructions 53.7 % right (shape was what limited both stages), and after it, held-out 57.9 %, seen 84.3 %, reconstructions 79.6 %, the best of 16 candidates 75.0 % with a reranker trained 300 steps and 87.0 % with 2,000; before the training set drew three more kinds in every colour and the dVAE split its merged codes (2026-12-02 11:31), held-out 55.6 %, seen 78.2 %, reconstructions 88.0 %, the best of 16 85.2 %; after it but with 1,200 dVAE steps instead of 2,000 (2026-12-03 00:00), held-out 69.0 %, seen 85.6 %, reconstructions 93.5 % (small triangles drawn as circles or squares), the best of 16 89.8 %; with 2,000 dVAE steps but 4,096 training images and 2,500 transformer updates (2026-12-03 03:51), held-out 76.4 %, seen 94.0 %, reconstructions 100 %, the best of 16 97.2 %; this preset with two native threads per worker (2026-12-03 14:15, 65 minutes), held-out 86.1 %, seen 99.1 %, reconstructions 100 %, the best of 4 99.1 %; dalle-pytorch 1.6.6 on the same shapes set, held-out never above 22 % and seen 80 % after 10–15 CPU-minutes.',
    '',
    'Quality at every checkpoint, against minutes since the demo started (EMA weights, the probe of `train.qualityExamples` / `train.qualitySamples`):',
    '',
    '![quality](quality.svg)',
    '',
    ...o.training.quality.map((q) => `- ${qualityLine(q)}`),
    '',
  ];
}

function trainingSection(o: DemoOutcome, report: DemoReport): string[] {
  const { result, kill } = o.training;
  const { spec } = o;
  const row = (label: string, r: TrainStageResult, stage: 'dvae' | 'transformer' | 'rerank') =>
    `| ${label} | ${r.step} | ${report.secondsPerStage[stage]?.toFixed(0)} | ${report.stepsPerMinute[stage]?.toFixed(1)} | ${pctOrDash(report.exposedCommunication[stage])} | ${r.loss.toFixed(4)} |`;
  return [
    '## Training',
    '',
    `Preset \`shapes\`${o.sets?.length ? ` with ${o.sets.map((x) => `\`--set ${x}\``).join(' ')}` : ''} (${o.minutes}-minute budget), W = ${spec.train.worldSize}, PowerSGD rank ${spec.powersgd.rank}, tfjs backend ${o.backend}, wall time ${(report.wallSeconds / 60).toFixed(1)} min.`,
    '',
    '| stage | steps | seconds | steps/min | exposed communication | final loss |',
    '| --- | --- | --- | --- | --- | --- |',
    row('dVAE', result.dvae, 'dvae'),
    `| encode dataset | | ${report.secondsPerStage.encode?.toFixed(0)} | | | |`,
    row('transformer', result.transformer, 'transformer'),
    ...(result.rerank ? [row('reranker', result.rerank, 'rerank')] : []),
    '',
    "Steps/min: the stage's steps over its wall time (restarts and checkpoints included). Exposed",
    "communication: the share of the ranks' step time spent waiting for the gradient all-reduces.",
    '',
    `Restarts: ${result.restarts}${kill ? ` (worker 1 SIGKILLed at dVAE step ${kill.atStep}; resumed from checkpoint ${kill.checkpointStep} after ${((kill.resumedAfterMs ?? NaN) / 1000).toFixed(1)} s)` : ''}.`,
    '',
    `Gradient traffic: ${mb(report.gradients.bytesRaw)} raw, ${mb(report.gradients.bytesSent)} sent, compression rate ${(report.gradients.compressionRate * 100).toFixed(1)} %.`,
    '',
    `Model: ${result.model.name} v${result.model.version} (${result.model.bytes} bytes, sha256 ${result.model.sha256.slice(0, 16)}…).`,
    '',
    '![loss](loss.svg)',
    '',
  ];
}
