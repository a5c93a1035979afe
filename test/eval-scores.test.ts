// `dalle eval`'s caption–image score: a trained tiny bundle with a reranker judges generated against real
// held-out images, in this process and as the CLI a user runs, on the shapes set and on a folder dataset
// (the case with no pixel analyzer, where this score is the only number).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolveSpec } from '../config/index.ts';
import { writeShapes } from '../data/shapes.ts';
import { bundleReranker, captionScores, heldoutPairs, type GenerateFn } from '../eval/index.ts';
import { decodeBundle, encodeBundle, openStores } from '../store/index.ts';
import { makeTinyBundle } from './fixtures/tiny-bundle.ts';

const root = fileURLToPath(new URL('..', import.meta.url));

/** A generator that answers caption i with real image (i + shift) of the pairs: known images, known scores. */
const realImages =
  (rgbs: Uint8Array[], shift: number): GenerateFn =>
  async (prompts) =>
    prompts.map((_, i) => rgbs[(i + shift + rgbs.length) % rgbs.length]!);

const dalle = (args: string[]) =>
  spawnSync(process.execPath, ['bin/dalle.js', 'eval', ...args], {
    cwd: root,
    encoding: 'utf8',
    timeout: 120_000,
  });

test('eval: the reranker scores generated vs real held-out images, on shapes and on a folder dataset', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'dalle-eval-scores-'));
  try {
    const { bytes, spec } = await makeTinyBundle();
    const reranker = (await bundleReranker(bytes))!;
    assert.ok(reranker, 'the tiny bundle has a reranker');
    const { pairs, split } = await heldoutPairs(spec.dataset, spec.dvae.resolution, 5, 3);
    assert.equal(split, 'heldout');
    assert.equal(pairs.length, 5);
    const rgbs = pairs.map((p) => p.rgb);
    // Real images as the "generated" ones: the same row. Each caption answered by the previous pair's
    // image: exactly the mismatched floor.
    const same = await captionScores({ generate: realImages(rgbs, 0), reranker, pairs });
    assert.deepEqual(same.generated, same.real);
    assert.equal(same.distractors, 4);
    assert.ok(same.real.mean >= -1 && same.real.mean <= 1);
    const shifted = await captionScores({ generate: realImages(rgbs, -1), reranker, pairs });
    assert.ok(Math.abs(shifted.generated.mean - same.mismatchedMean) < 1e-6);
    assert.deepEqual(shifted.real, same.real);
    await assert.rejects(
      captionScores({ generate: realImages(rgbs, 0), reranker, pairs: pairs.slice(0, 1) }),
      /needs ≥ 2 captioned images/,
    );
    reranker.dispose();

    // The CLI on a shapes model: the attribute table and the score, with candidates and guidance.
    const { models } = await openStores({ dir });
    await models.publish('dalle', bytes, { test: 'eval-scores' });
    const shapes = dalle([
      '--store',
      dir,
      '--n',
      '4',
      '--candidates',
      '2',
      '--guidance-scale',
      '2',
      '--json',
    ]);
    assert.equal(shapes.status, 0, shapes.stderr);
    const out = JSON.parse(shapes.stdout) as Record<string, any>;
    assert.equal(out.candidates, 2);
    assert.equal(out.guidanceScale, 2);
    assert.equal(out.heldOut.images, 4);
    assert.equal(out.captionScores.split, 'heldout');
    assert.equal(out.captionScores.pairs, 4);
    assert.equal(out.captionScores.generated.images, 4);
    // A curve: the same held-out prompts and seeds per setting, so its (N 2, scale 2) point is the row above.
    const sweep = dalle([
      '--store',
      dir,
      '--n',
      '4',
      '--candidates',
      '2,1',
      '--guidance-scale',
      '2',
      '--json',
    ]);
    assert.equal(sweep.status, 0, sweep.stderr);
    const { curve } = JSON.parse(sweep.stdout) as { curve: Record<string, any>[] };
    assert.deepEqual(
      curve.map((p) => [p.candidates, p.guidanceScale, p.heldOut.images]),
      [
        [2, 2, 4],
        [1, 2, 4],
      ],
    );
    assert.deepEqual(curve[0]!.heldOut.accuracy, out.heldOut.accuracy);
    assert.ok(curve.every((p) => p.msPerImage > 0));
    // The reranker keeps one of the N candidates: it cannot be right more often than any candidate is.
    assert.ok(curve[0]!.anyCandidateRight >= curve[0]!.heldOut.accuracy.all, JSON.stringify(curve[0]));
    assert.ok(curve[0]!.anyCandidateRight <= 1);
    assert.equal(curve[1]!.anyCandidateRight, undefined, 'one candidate: nothing to rerank');
    const badScale = dalle(['--store', dir, '--guidance-scale', '1,x']);
    assert.equal(badScale.status, 2);
    assert.match(badScale.stderr, /--guidance-scale must be a comma list of numbers ≥ 0, got 'x'/);

    // A model of a folder dataset that moved: --dataset points at it; only the score applies.
    const photos = join(dir, 'photos');
    await writeShapes(photos, 'folder', { count: 6, canvas: 24, seed: 9 });
    const b = decodeBundle(bytes);
    const folder = resolveSpec({ preset: 'tiny', dataset: { kind: 'folder', path: '/nowhere' } }).dataset;
    const folderSpec = { ...b.spec, dataset: folder };
    await models.publish('photos', encodeBundle({ ...b, spec: folderSpec }), {});
    const table = dalle(['--store', dir, '--model', 'photos', '--dataset', photos, '--n', '6']);
    assert.equal(table.status, 0, table.stderr);
    assert.match(table.stdout, /training \(the dataset has no held-out split\) pairs/);
    assert.match(table.stdout, /\| generated \| -?\d\.\d{3} \| \d+\.\d% \|/);
    assert.match(table.stdout, /\| chance \| – \| 16\.7% \|/);
    assert.doesNotMatch(table.stdout, /zero-shot/);

    // Without a reranker nothing can judge a folder model's images: a clear refusal.
    await models.publish('plain', encodeBundle({ ...b, spec: folderSpec, rerank: undefined }), {});
    const plain = dalle(['--store', dir, '--model', 'plain', '--dataset', photos, '--n', '2']);
    assert.equal(plain.status, 1);
    assert.match(plain.stderr, /without a reranker: nothing here can judge its images/);
    const moved = dalle(['--store', dir, '--dataset', photos, '--n', '2']);
    assert.notEqual(moved.status, 0);
    assert.match(moved.stderr, /a shapes model has no dataset path/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
