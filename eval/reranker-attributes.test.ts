import { test } from 'node:test';
import assert from 'node:assert/strict';
import { analyzeShape } from '../data/shapes-analyzer.ts';
import { parseShapesCaption } from '../data/shapes.ts';
import type { EvalReranker } from './caption-scores.ts';
import { formatRerankerAttributes, rerankerAttributes } from './reranker-attributes.ts';
import { ATTRIBUTES, type Attribute } from './shapes-eval.ts';

/** A "reranker" that reads the image with the pixel analyzer and counts the caption's attributes it
 *  matches, blind to the attributes in `blind`. */
function analyzerReranker(blind: Attribute[] = []): EvalReranker {
  const R = 32;
  return {
    resolution: R,
    similarities(captions, rgb, n) {
      const parsed = captions.map((c) => parseShapesCaption(c)!);
      const out = new Float32Array(n * captions.length);
      for (let i = 0; i < n; i++) {
        const a = analyzeShape(rgb.subarray(i * R * R * 3, (i + 1) * R * R * 3), R)!;
        parsed.forEach((p, j) => {
          out[i * captions.length + j] = ATTRIBUTES.filter((k) => !blind.includes(k) && a[k] === p[k]).length;
        });
      }
      return out;
    },
  };
}

test('reranker attributes: each attribute is scored on its own, over every caption template', () => {
  const sharp = rerankerAttributes(analyzerReranker());
  assert.equal(sharp.captions, 324);
  assert.equal(
    sharp.heldOut.images,
    108 * 3 * sharp.templates,
    'three jitters of every held-out composition',
  );
  for (const k of [...ATTRIBUTES, 'all'] as const) assert.equal(sharp.heldOut[k], 1, k);
  // Colour-blind: ties go to the first caption, the first colour (1 in 6 right); the rest stays exact.
  const blind = rerankerAttributes(analyzerReranker(['color']));
  assert.ok(Math.abs(blind.heldOut.color - 1 / 6) < 0.05, `colour ${blind.heldOut.color}`);
  for (const k of ['shape', 'size', 'position'] as const) assert.equal(blind.heldOut[k], 1, k);
  assert.equal(blind.heldOut.all, blind.heldOut.color);
  assert.match(formatRerankerAttributes(blind), /\| held-out compositions \| 1944 \| 1\d\.\d% \| 100\.0% \|/);
});
