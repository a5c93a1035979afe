import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveSpec } from '../../config/index.ts';
import { demoCurves, demoCurvesSection } from './demo-curves.ts';
import type { CurvePoint } from '../../eval/index.ts';

test('demo curves: no reranker and no caption dropout means no curve (and no gRPC call), and the report says why', async () => {
  const spec = resolveSpec({ preset: 'shapes', rerank: { steps: 0 } });
  // An address nothing listens on: a call would fail, so null proves none was made.
  const points = await demoCurves({ address: '127.0.0.1:1', spec, n: 3, log: () => undefined });
  assert.equal(points, null);
  const md = demoCurvesSection(null, spec).join('\n');
  assert.match(
    md,
    /no reranker trained \(rerank.steps = 0\); no guidance curve: trained without caption dropout\./,
  );
  assert.doesNotMatch(md, /\| candidates N \|/);
});

test('demo curves: the section tabulates every point', () => {
  const spec = resolveSpec({ preset: 'shapes', transformer: { captionDropout: 0.1 } });
  const acc = { color: 1, shape: 0.5, size: 1, position: 1, all: 0.5 };
  const points: CurvePoint[] = [1, 4].map((candidates) => ({
    candidates,
    guidanceScale: 3,
    heldOut: { images: 6, accuracy: acc, empty: 0, seconds: 1.2 },
    msPerImage: 200 * candidates,
    ...(candidates > 1 ? { anyCandidateRight: 5 / 6 } : {}),
  }));
  const md = demoCurvesSection(points, spec).join('\n');
  assert.match(md, /\| 1 \| 3 \| 6 \| 100\.0% \| 50\.0% \| 100\.0% \| 100\.0% \| 50\.0% \| – \| 200 \|/);
  assert.match(md, /\| 4 \| 3 \| 6 \| .* \| 50\.0% \| 83\.3% \| 800 \|/);
  assert.doesNotMatch(md, /no reranker|no guidance/);
});
