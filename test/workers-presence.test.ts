// workers: the presence survey over a real nats-server counts the idle slots of the workers of one task
// queue, ignores other queues and garbage, and an absent worker is simply not counted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'nats';
import { answerPresence, idleSlots, PRESENCE_SUBJECT, surveyWorkers } from '../activities/index.ts';
import { NATS_URL } from './collective-helpers.ts';

test('workers: a presence survey sums the idle slots of the queue that answer in time', async () => {
  const nc = await connect({ servers: NATS_URL });
  const queue = `q-${process.pid}-${Date.now()}`;
  let busy = 1;
  const subs = [
    answerPresence(nc, () => ({ identity: 'a', hostId: 'h1', taskQueue: queue, slots: 2, busy })),
    answerPresence(nc, () => ({ identity: 'b', hostId: 'h2', taskQueue: queue, slots: 1, busy: 0 })),
    answerPresence(nc, () => ({ identity: 'c', hostId: 'h3', taskQueue: 'other', slots: 4, busy: 0 })),
    nc.subscribe(PRESENCE_SUBJECT, { callback: (_, m) => m.respond(new TextEncoder().encode('not json')) }),
  ];
  try {
    const seen = await surveyWorkers(nc, queue, 300);
    assert.deepEqual(seen.map((w) => w.identity).sort(), ['a', 'b']);
    assert.equal(idleSlots(seen), 2);
    busy = 2;
    assert.equal(idleSlots(await surveyWorkers(nc, queue, 300)), 1, 'answers are live');
    subs[1]!.unsubscribe();
    assert.deepEqual(
      (await surveyWorkers(nc, queue, 300)).map((w) => w.identity),
      ['a'],
      'a worker that is gone is not counted',
    );
  } finally {
    for (const s of subs) s.unsubscribe();
    await nc.close();
  }
});

test('workers: a survey with nobody answering is empty, not an error', async () => {
  const nc = await connect({ servers: NATS_URL });
  try {
    assert.deepEqual(await surveyWorkers(nc, `nobody-${process.pid}`, 200), []);
  } finally {
    await nc.close();
  }
});
