import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, configJsonSchema, loadSpec, PresetName, resolveSpec, RunSpec } from './index.ts';

test('config: every preset resolves', () => {
  for (const p of PresetName.options) assert.equal(loadSpec(p).preset, p);
});

test('config: paper-12b carries the paper numbers', () => {
  const s = loadSpec('paper-12b');
  assert.deepEqual(
    [
      s.dvae.resolution,
      s.dvae.grid,
      s.dvae.codebookSize,
      s.dvae.groups,
      s.dvae.blocksPerGroup,
      s.dvae.hidden,
    ],
    [256, 32, 8192, 4, 2, 256],
  );
  assert.deepEqual(
    [s.dvae.betaMax, s.dvae.betaWarmupSteps, s.dvae.tauEnd, s.dvae.tauDecaySteps],
    [6.6, 5000, 1 / 16, 150_000],
  );
  assert.deepEqual(
    [s.dvae.lr, s.dvae.lrEnd, s.dvae.lrDecaySteps, s.dvae.weightDecay, s.dvae.emaDecay],
    [1e-4, 1.25e-6, 1_200_000, 1e-4, 0.999],
  );
  const t = s.transformer;
  assert.deepEqual(
    [t.layers, t.heads, t.dModel, t.textLen, t.vocabSize, t.convKernel],
    [64, 62, 3968, 256, 16_384, 11],
  );
  assert.deepEqual(
    [t.lr, t.warmupSteps, t.adamBeta2, t.weightDecay, t.gradClip, t.emaDecay, t.bpeDropout],
    [4.5e-4, 5000, 0.96, 4.5e-2, 4, 0.99, 0.1],
  );
  assert.deepEqual([t.textLossWeight, t.imageLossWeight, t.plateauHalvings], [1 / 8, 7 / 8, 5]);
  assert.equal(s.powersgd.rank, 896);
  assert.equal(s.train.batchSize, 1024);
});

test('config: overrides merge onto the preset; a dataset of another kind replaces it', () => {
  const s = resolveSpec({
    preset: 'shapes',
    dvae: { steps: 7 },
    dataset: { kind: 'folder', path: '/data/x' },
  });
  assert.equal(s.dvae.steps, 7);
  assert.equal(s.dvae.hidden, loadSpec('shapes').dvae.hidden);
  assert.equal(s.dataset.kind, 'folder');
  assert.equal(s.dataset.kind === 'folder' && s.dataset.path, '/data/x');
  assert.ok(
    !('canvas' in s.dataset) && !('count' in s.dataset),
    'no shapes fields leak into a folder dataset',
  );
});

test('config: an invalid file is rejected naming every bad field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  const file = join(dir, 'bad.yaml');
  writeFileSync(
    file,
    'preset: tiny\ndvae:\n  grid: 3\n  bogus: 1\ntrain:\n  seed: -2\n  worldSize: 9\npowersgd:\n  wire: fp8\n',
  );
  assert.throws(
    () => loadSpec(file),
    (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      const paths = e.issues.map((i) => i.path).sort();
      assert.deepEqual(paths, ['dvae', 'dvae.grid', 'powersgd.wire', 'train.seed', 'train.worldSize']);
      assert.match(e.message, /Unrecognized key: "bogus"/);
      return true;
    },
  );
});

test('config: unknown preset, unreadable file and bad syntax are named', () => {
  assert.throws(() => resolveSpec({ preset: 'huge' }), /preset/);
  assert.throws(() => loadSpec('/nonexistent/x.json'), /cannot read file/);
  const dir = mkdtempSync(join(tmpdir(), 'cfg-'));
  writeFileSync(join(dir, 'x.json'), '{ "preset": ');
  assert.throws(() => loadSpec(join(dir, 'x.json')), /not valid JSON/);
});

test('config: JSON Schema names the top-level keys', () => {
  const schema = configJsonSchema() as { properties: Record<string, unknown> };
  assert.deepEqual(Object.keys(schema.properties).sort(), [
    'dataset',
    'dvae',
    'modelName',
    'powersgd',
    'preset',
    'rerank',
    'train',
    'transformer',
  ]);
});

test('config: a spec written before the reranker existed parses with no rerank stage and no caption dropout', () => {
  const old = JSON.parse(JSON.stringify(loadSpec('tiny'))) as Record<string, Record<string, unknown>>;
  delete old.rerank;
  delete old.transformer!.captionDropout;
  const s = RunSpec.parse(old);
  assert.equal(s.rerank.steps, 0);
  assert.equal(s.transformer.captionDropout, 0);
  assert.equal(
    loadSpec('tiny').rerank.steps > 0,
    true,
    'tiny trains a reranker (the tests exercise the stage)',
  );
  assert.equal(loadSpec('paper-12b').rerank.steps, 0, 'the paper trained CLIP apart from DALL-E');
});

test('config: any world size up to the batch is valid; elastic bounds are checked together', () => {
  assert.equal(resolveSpec({ preset: 'tiny', train: { worldSize: 3 } }).train.worldSize, 3);
  const issues = (over: Record<string, unknown>) => {
    try {
      resolveSpec({ preset: 'tiny', train: over });
      return [];
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.issues.map((i) => `${i.path}: ${i.message}`);
    }
  };
  assert.deepEqual(issues({ worldSize: 9 }), [
    'train.worldSize: must be ≤ batchSize (8): every rank needs a sample of the global batch',
  ]);
  assert.deepEqual(issues({ elastic: { min: 3, max: 2 } }), [
    'train.elastic.min: must be ≤ max (2)',
    'train.worldSize: must be within elastic [3, 2]',
  ]);
  assert.deepEqual(issues({ elastic: { min: 1, max: 9 } }), ['train.elastic.max: must be ≤ batchSize (8)']);
  assert.deepEqual(issues({ elastic: { min: 1, max: 3 }, microBatch: 2 }), []);
});

test('config: numbers have upper bounds that name the field (no 10^16-parameter model from a typo)', () => {
  const err = (over: Record<string, unknown>) => {
    try {
      resolveSpec({ preset: 'tiny', ...over }, 'bounds');
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return [...new Set(e.issues.map((i) => i.path))];
    }
    assert.fail(`accepted ${JSON.stringify(over)}`);
  };
  assert.deepEqual(err({ dvae: { codebookSize: 2 ** 53 } }), ['dvae.codebookSize']);
  assert.deepEqual(err({ transformer: { dModel: 1e9, heads: 1 } }), ['transformer.dModel']);
  assert.deepEqual(err({ train: { batchSize: 2 ** 40 } }), ['train.batchSize']);
  assert.deepEqual(err({ train: { heartbeatTimeout: 1e12 } }), ['train.heartbeatTimeout']);
  assert.deepEqual(err({ dvae: { steps: Number.MAX_SAFE_INTEGER } }), ['dvae.steps']);
  assert.deepEqual(err({ train: { seed: 2 ** 32 } }), ['train.seed']);
  assert.deepEqual(err({ rerank: { embedDim: 1e9 } }), ['rerank.embedDim']);
  assert.deepEqual(err({ rerank: { steps: Number.MAX_SAFE_INTEGER } }), ['rerank.steps']);
});

test('config: code splitting names what it needs; a spec without it keeps its hash', () => {
  const issues = (over: Record<string, unknown>) => {
    try {
      resolveSpec({ preset: 'tiny', dvae: { codeSplitEvery: 10, ...over } });
      return [];
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.issues.map((i) => `${i.path}: ${i.message}`);
    }
  };
  assert.deepEqual(issues({}), []);
  assert.deepEqual(issues({ quantizer: 'vq' }), ['dvae.codeSplitEvery: needs dvae.quantizer gumbel, not vq']);
  assert.deepEqual(issues({ codeLogitScale: 5 }), [
    'dvae.codeSplitEvery: needs dvae.codeLogitScale 0 (a split moves the linear logits of a code)',
  ]);
  assert.deepEqual(issues({ straightThrough: true, codeRestartEvery: 5 }), [
    'dvae.codeSplitEvery: cannot be combined with dvae.codeRestartEvery (both rewrite codes)',
  ]);
  const plain = resolveSpec({ preset: 'tiny' });
  assert.ok(
    !('codeSplitEvery' in plain.dvae) && !('lrWarmupSteps' in plain.dvae),
    'absent fields stay absent',
  );
});
