import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planPlacement } from './placement.ts';
import type { WorkerPresence } from './presence.ts';

const w = (hostId: string, slots = 1, busy = 0, identity = `${hostId}-${Math.random()}`): WorkerPresence => ({
  identity,
  hostId,
  taskQueue: 'q',
  slots,
  busy,
});

test('placement: 2 hosts × 2 free slots take ranks 0,1 and 2,3 in host-id order, whatever the answer order', () => {
  const p = planPlacement([w('b'), w('a'), w('b'), w('a')], 4, 'q');
  assert.deepEqual(p.hosts, ['a', 'b']);
  assert.equal(p.perHost, 2);
  assert.deepEqual(p.queues, ['q@a', 'q@a', 'q@b', 'q@b']);
});

test('placement: as many ranks per host as the free slots allow, busy slots not counted', () => {
  assert.deepEqual(planPlacement([w('a', 4), w('b', 4)], 4, 'q').queues, ['q@a', 'q@a', 'q@a', 'q@a']);
  const p = planPlacement([w('a', 4, 3), w('b', 2), w('c', 3)], 4, 'q');
  assert.deepEqual([p.hosts, p.perHost], [['b', 'c'], 2]);
  assert.equal(planPlacement([w('a', 3), w('b', 3)], 6, 'q').perHost, 3);
});

test('placement: no even layout with 2 or more ranks per host: every rank on the shared queue', () => {
  for (const ws of [[w('a'), w('b'), w('c'), w('d')], [w('a', 3), w('b', 1, 1)], []]) {
    const p = planPlacement(ws, 4, 'q');
    assert.deepEqual(p.queues, []);
    assert.match(p.why ?? '', /no even layout of 4 ranks/);
  }
});
