import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { CollectiveArgumentError, PeerLostError } from '../collective/index.ts';
import { ConfigError } from '../config/index.ts';
import { DatasetNotFoundError, EmptyDatasetError } from '../data/index.ts';
import { DvaeConfigError, StateMismatchError } from '../model/index.ts';
import { asNonRetryable, isFatal, withFatalErrors } from './errors.ts';

test('errors: a class marked fatal becomes a non-retryable failure with its name and message', () => {
  const fatal = [
    new ConfigError('x.yaml', [{ path: 'train.batchSize', message: 'must be positive' }]),
    new CollectiveArgumentError('rank', -1, 'must be an integer in [0, 2)'),
    new DatasetNotFoundError('folder', '/nowhere'),
    new EmptyDatasetError('folder', {}),
    new DvaeConfigError('grid', 3, 'must divide the resolution'),
    new StateMismatchError(['params: 3 arrays, expected 4']),
    z.object({ a: z.number() }).safeParse({ a: 'x' }).error!,
  ];
  for (const e of fatal) {
    assert.ok(isFatal(e), e.name);
    const f = asNonRetryable(e);
    assert.ok(f instanceof ApplicationFailure && f.nonRetryable, e.name);
    assert.equal(f.type, e.name);
    assert.equal(f.message, `${e.name}: ${e.message}`);
    assert.equal(f.cause, e);
  }
});

test('errors: anything else passes through for the workflow to relaunch', () => {
  for (const e of [
    new PeerLostError([1], 5, 'allReduce:grad', 'no responders', 0),
    new Error('boom'),
    'text',
  ]) {
    assert.equal(isFatal(e), false);
    assert.equal(asNonRetryable(e), e);
  }
  const already = ApplicationFailure.nonRetryable('stop', 'ConfigError');
  assert.equal(asNonRetryable(already), already);
});

test('errors: withFatalErrors maps what each activity throws', async () => {
  const acts = withFatalErrors({
    bad: async () => {
      throw new StateMismatchError(['wrong architecture']);
    },
    flaky: async () => {
      throw new Error('connection reset');
    },
    fine: async (x: number) => x + 1,
  });
  assert.equal(await acts.fine(1), 2);
  await assert.rejects(acts.bad(), (e: unknown) => e instanceof ApplicationFailure && e.nonRetryable);
  await assert.rejects(
    acts.flaky(),
    (e: unknown) => !(e instanceof ApplicationFailure) && /reset/.test(String(e)),
  );
});
