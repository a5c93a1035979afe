import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveSpec } from '../../config/index.ts';
import type { TrainStageResult } from '../../contract/index.ts';
import type { EvalReport, GroupScore } from '../../eval/index.ts';
import { writeDemoReport, type DemoOutcome } from './demo-report.ts';

const score = (all: number): GroupScore => ({
  images: 8,
  accuracy: { color: all, shape: all, size: all, position: all, all },
  empty: 0,
  seconds: 1,
});
const stage = (s: TrainStageResult['stage'], step: number, loss: number): TrainStageResult => ({
  stage: s,
  step,
  loss,
  restarts: 0,
  bytesRaw: 4 * 2 ** 20,
  bytesSent: 2 ** 20,
  stepMs: 1000,
  exposedCommMs: 250,
});

test('demo report: report.json holds the figures and report.md the sections, stage rows and kill line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'demo-report-'));
  try {
    const evaluation: EvalReport = {
      canvas: 32,
      promptsPerGroup: 8,
      seed: 0,
      seen: score(0.5),
      heldOut: score(0.25),
      random: score(0),
      reconstruction: score(0.75),
      reconstructionMse: 0.01,
      seenReconstruction: score(0.875),
      chance: { color: 1 / 6, shape: 1 / 3, size: 1 / 2, position: 1 / 9, all: 1 / 324 },
      items: [],
    };
    const seconds: Record<string, number> = { dvae: 60, encode: 5, transformer: 120 };
    const outcome: DemoOutcome = {
      runId: 'demo-test',
      t0: Date.now() - 60_000,
      minutes: 2,
      sets: ['transformer.captionDropout=0.1'],
      backend: 'wasm',
      spec: resolveSpec({ preset: 'shapes', transformer: { captionDropout: 0.1 } }),
      training: {
        result: {
          runId: 'demo-test',
          dvae: stage('dvae', 100, -2.5),
          transformer: stage('transformer', 200, 0.5),
          model: { name: 'dalle', version: 3, sha256: 'ab'.repeat(32), bytes: 1234 },
          restarts: 1,
        },
        losses: [{ stage: 'dvae', step: 1, loss: 1 }],
        quality: [],
        stageSeconds: (s) => seconds[s] ?? null,
        kill: { atStep: 54, checkpointStep: 50, at: 0, resumedAfterMs: 24_100 },
      },
      samples: ['a red circle'],
      evaluation,
      table: '| group | table |',
      curves: null,
    };
    writeDemoReport(dir, outcome);
    const json = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8'));
    assert.equal(json.stepsPerMinute.dvae, 100);
    assert.equal(json.stepsPerMinute.transformer, 100);
    assert.equal(json.stepsPerMinute.rerank, null);
    assert.equal(json.exposedCommunication.dvae, 0.25);
    assert.equal(json.gradients.compressionRate, 0.75);
    assert.deepEqual(json.kill, outcome.training.kill);
    assert.equal(json.evaluation.items, undefined, 'the per-item list stays out of report.json');
    const md = readFileSync(join(dir, 'report.md'), 'utf8');
    assert.match(md, /^# DALL-E demo run demo-test\n/);
    assert.match(
      md,
      /\*\*25\.0 %\*\* of plain samples right on all four attributes; seen compositions 50\.0 %/,
    );
    assert.match(md, /held-out images 75\.0 % and of seen ones 87\.5 % \(the ceilings\)/);
    assert.match(md, /\| dVAE \| 100 \| 60 \| 100\.0 \| 25\.0 % \| -2\.5000 \|/);
    assert.match(md, /\| transformer \| 200 \| 120 \| 100\.0 \| 25\.0 % \| 0\.5000 \|/);
    assert.doesNotMatch(md, /\| reranker \|/);
    assert.match(md, /Preset `shapes` with `--set transformer\.captionDropout=0\.1` \(2-minute budget\)/);
    assert.match(md, /worker 1 SIGKILLed at dVAE step 54; resumed from checkpoint 50 after 24\.1 s/);
    assert.match(md, /Gradient traffic: 8\.0 MiB raw, 2\.0 MiB sent, compression rate 75\.0 %/);
    assert.match(readFileSync(join(dir, 'loss.svg'), 'utf8'), /<svg/);
    assert.match(readFileSync(join(dir, 'quality.svg'), 'utf8'), /<svg/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
