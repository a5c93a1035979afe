// contract: the world-size policy the stage workflow and rank 0 share (pure: no services).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveSpec } from '../config/index.ts';
import {
  clampWorldSize,
  nextWorldSize,
  worldSizeAfterShortfall,
  worldSizeBounds,
} from '../contract/index.ts';

const fixed = resolveSpec({ preset: 'tiny' }); // batch 8, W 2
const elastic = resolveSpec({ preset: 'tiny', train: { elastic: { min: 2, max: 3 } } });

test('elastic: bounds are [min, max] with train.elastic, else 1..batchSize', () => {
  assert.deepEqual(worldSizeBounds(fixed), { min: 1, max: 8 });
  assert.deepEqual(worldSizeBounds(elastic), { min: 2, max: 3 });
  assert.equal(clampWorldSize(fixed, 3), 3, 'any W up to the batch, divisor or not');
  assert.equal(clampWorldSize(fixed, 20), 8);
  assert.equal(clampWorldSize(elastic, 1), 2);
  assert.equal(clampWorldSize(elastic, 0), undefined);
  assert.equal(clampWorldSize(elastic, 2.5), undefined);
});

test('elastic: a requested size wins; otherwise only an elastic run grows, onto idle slots, up to max', () => {
  assert.equal(nextWorldSize(fixed, 2, 3, 0), 3, 'setWorldSize');
  assert.equal(nextWorldSize(fixed, 2, 2, 5), undefined, 'no growth without train.elastic');
  assert.equal(nextWorldSize(elastic, 2, 2, 0), undefined);
  assert.equal(nextWorldSize(elastic, 2, 2, 1), 3);
  assert.equal(nextWorldSize(elastic, 2, 2, 7), 3, 'capped at max');
  assert.equal(nextWorldSize(elastic, 3, 3, 2), undefined, 'already at max');
  const wide = resolveSpec({ preset: 'tiny', train: { worldSize: 2, elastic: { min: 2, max: 8 } } });
  assert.equal(nextWorldSize(wide, 2, 2, 1, 2), undefined, 'half a host is not adopted');
  assert.equal(nextWorldSize(wide, 2, 2, 3, 2), 4, 'one whole host of two ranks');
  assert.equal(nextWorldSize(wide, 6, 6, 4, 2), 8, 'up to max');
});

test('elastic: ranks that never arrive shrink an elastic run, never below min; others keep their size', () => {
  assert.equal(worldSizeAfterShortfall(elastic, 3, 1), 2);
  assert.equal(worldSizeAfterShortfall(elastic, 3, 2), 2, 'min');
  assert.equal(worldSizeAfterShortfall(elastic, 3, 0), 3, 'not a join shortfall');
  assert.equal(worldSizeAfterShortfall(fixed, 3, 1), 3, 'waits for workers');
});

test('elastic: the rerank stage is bounded by its own global batch', () => {
  const small = resolveSpec({
    preset: 'tiny',
    rerank: { batchSize: 4 },
    train: { elastic: { min: 2, max: 6 } },
  });
  assert.deepEqual(worldSizeBounds(small, 'rerank'), { min: 2, max: 4 });
  assert.deepEqual(worldSizeBounds(small, 'transformer'), { min: 2, max: 6 });
  assert.equal(clampWorldSize(small, 6, 'rerank'), 4, 'a size the transformer grew to is moved into bounds');
  assert.equal(nextWorldSize(small, 4, 4, 3, 1, 'rerank'), undefined, 'no growth past the batch');
  assert.throws(
    () => resolveSpec({ preset: 'tiny', rerank: { batchSize: 2 }, train: { worldSize: 3 } }),
    /rerank\.batchSize.*must be ≥ train\.worldSize and train\.elastic\.min \(3\)/s,
  );
});
