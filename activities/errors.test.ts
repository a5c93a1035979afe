import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ApplicationFailure } from '@temporalio/common';
import { z } from 'zod';
import { CollectiveArgumentError, PeerLostError } from '../collective/index.ts';
import { ConfigError } from '../config/index.ts';
import { DatasetNotFoundError, EmptyDatasetError } from '../data/index.ts';
import * as tf from '@tensorflow/tfjs';
import { DvaeConfigError, initTfBackend, StateMismatchError } from '../model/index.ts';
import { asNonRetryable, isAllocationFailure, isFatal, withFatalErrors } from './errors.ts';

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

// WebAssembly is a global of Node, outside the ES library this project compiles against.
const wasm = (
  globalThis as unknown as {
    WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { grow(pages: number): number } };
  }
).WebAssembly;

/** What `make` throws (it must throw). */
function thrown(make: () => unknown): unknown {
  try {
    make();
  } catch (e) {
    return e;
  }
  throw new Error('no allocation failure');
}

test('errors: real allocation failures (buffers, wasm memory, a tensor past the wasm heap) are fatal OutOfMemoryError', async () => {
  await initTfBackend('wasm');
  const failures = [
    thrown(() => new ArrayBuffer(2 ** 52)),
    thrown(() => new Float32Array(2 ** 52)),
    thrown(() => new wasm.Memory({ initial: 1, maximum: 65536 }).grow(65536)),
    // 4 GiB of zeros (untouched pages, never resident) cannot enter a wasm heap of at most 4 GiB − 64 KiB.
    thrown(() => tf.tidy(() => tf.zeros([2 ** 30]).add(1))),
  ];
  for (const e of failures) {
    assert.ok(isAllocationFailure(e), String(e));
    const f = asNonRetryable(e);
    assert.ok(f instanceof ApplicationFailure && f.nonRetryable, String(e));
    assert.equal(f.type, 'OutOfMemoryError');
    assert.match(f.message, /^out of memory: .* smaller batchSize or model/);
  }
  assert.equal(isAllocationFailure(new RangeError('step must be positive')), false);
});
