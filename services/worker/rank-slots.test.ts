import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ActivitySlotInfo, CustomSlotSupplier, SlotReserveContext } from '@temporalio/worker';
import { RankSlots } from './rank-slots.ts';

const ctx = {} as SlotReserveContext;
const info = (activityType: string): ActivitySlotInfo => ({ type: 'activity', activityType });
const supplierOf = (s: RankSlots) =>
  (s.tuner() as { activityTaskSlotSupplier: CustomSlotSupplier<ActivitySlotInfo> }).activityTaskSlotSupplier;
const settled = async (p: Promise<unknown>) =>
  Promise.race([p.then(() => true), new Promise((r) => setTimeout(() => r(false), 20))]);

test('rank slots: a 1-slot process running an activity on one queue reserves no slot on either', async () => {
  const slots = new RankSlots(1, ['placeRanks']);
  const [shared, host] = [supplierOf(slots), supplierOf(slots)];
  const never = new AbortController().signal;
  const p1 = await shared.reserveSlot(ctx, never);
  assert.ok(await settled(host.reserveSlot(ctx, never)), 'each queue may hold one poll while nothing runs');
  assert.equal(await settled(shared.reserveSlot(ctx, never)), false, 'one reservation per queue');
  shared.markSlotUsed({ slotInfo: info('trainShard'), permit: p1 });
  assert.equal(slots.busy, 1);
  host.releaseSlot({ permit: {} }); // the host queue's poll timed out unused
  const abort = new AbortController();
  const waiting = host.reserveSlot(ctx, abort.signal);
  assert.equal(await settled(waiting), false, 'no new poll while the slot runs a rank');
  assert.equal(host.tryReserveSlot(ctx), null);
  shared.releaseSlot({ slotInfo: info('trainShard'), permit: p1 });
  assert.ok(await settled(waiting), 'the slot is free again');
  assert.equal(slots.busy, 0);
  abort.abort(new Error('stop'));
});

test('rank slots: the survey activity holds a slot but does not count as busy; an aborted wait rejects', async () => {
  const slots = new RankSlots(1, ['placeRanks']);
  const s = supplierOf(slots);
  const permit = await s.reserveSlot(ctx, new AbortController().signal);
  s.markSlotUsed({ slotInfo: info('placeRanks'), permit });
  assert.equal(slots.busy, 0);
  const abort = new AbortController();
  const waiting = supplierOf(slots).reserveSlot(ctx, abort.signal);
  abort.abort(new Error('no longer needed'));
  await assert.rejects(waiting, /no longer needed/);
  s.releaseSlot({ slotInfo: info('placeRanks'), permit });
});
