import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, resolveSpec } from '../../config/index.ts';
import { BASE_MINUTES, demoSpec } from './demo.ts';
import { workerThreads } from './demo-processes.ts';

test('demo: --minutes scales the step counts of all three stages, the reranker included', () => {
  const base = resolveSpec({ preset: 'shapes' });
  const full = demoSpec(BASE_MINUTES);
  assert.deepEqual(
    [full.dvae.steps, full.transformer.steps, full.rerank.steps],
    [base.dvae.steps, base.transformer.steps, base.rerank.steps],
    'the default budget trains the preset as it is',
  );
  const twice = demoSpec(2 * BASE_MINUTES);
  assert.equal(twice.rerank.steps, 2 * base.rerank.steps);
  assert.equal(twice.rerank.warmupSteps, 2 * base.rerank.warmupSteps);
  assert.equal(twice.transformer.steps, 2 * base.transformer.steps);
  const short = demoSpec(BASE_MINUTES / 1000);
  // A short budget: every stage at its floor of two checkpoints, not the reranker at its full 300.
  for (const s of [short.dvae.steps, short.transformer.steps, short.rerank.steps])
    assert.equal(s, 2 * base.train.checkpointEvery);
});

test('demo: --set overrides the preset, and its step counts are scaled with the budget like the preset’s', () => {
  const base = resolveSpec({ preset: 'shapes' });
  const spec = demoSpec(BASE_MINUTES, { transformer: { captionDropout: 0.1 }, dvae: { steps: 1000 } });
  assert.equal(spec.transformer.captionDropout, 0.1, 'a field the budget does not touch is kept');
  assert.equal(spec.transformer.steps, base.transformer.steps, 'fields beside it keep the preset');
  assert.equal(spec.dvae.steps, 1000);
  assert.equal(demoSpec(2 * BASE_MINUTES, { dvae: { steps: 1000 } }).dvae.steps, 2000);
  // A cool-down set over the preset stays the same share of the stage at any budget; none stays none.
  assert.equal(
    demoSpec(BASE_MINUTES / 2, { transformer: { cooldownSteps: 1000 } }).transformer.cooldownSteps,
    500,
  );
  assert.ok(!('cooldownSteps' in demoSpec(BASE_MINUTES / 2).transformer));
  assert.throws(
    () => demoSpec(BASE_MINUTES, { preset: 'tiny' }),
    (e: unknown) => e instanceof ConfigError && /demo trains the shapes preset/.test(e.message),
  );
  assert.throws(
    () => demoSpec(BASE_MINUTES, { transformer: { captionDropout: 2 } }),
    (e: unknown) => e instanceof ConfigError && /transformer\.captionDropout/.test(e.message),
  );
});

test('demo: each worker gets its share of the host’s cores, at least one', () => {
  assert.equal(workerThreads(2, 2), 1);
  assert.equal(workerThreads(2, 16), 8);
  assert.equal(workerThreads(3, 2), 1);
  assert.equal(workerThreads(1, 2), 2);
  assert.equal(workerThreads(4, 6), 1);
});
