import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChunkMeta } from './all-reduce.ts';
import { CollectiveFloodError } from './errors.ts';
import { checkChunk, checkSender, EarlyChunks, type Awaited, type GroupView } from './message-check.ts';

const g: GroupView = {
  rank: 1,
  worldSize: 3,
  peers: new Map([
    [0, 'tok0'],
    [2, 'tok2'],
  ]),
};
const meta = (o: Partial<ChunkMeta> = {}): ChunkMeta => ({
  opIndex: 4,
  step: 10,
  tag: 'ar',
  wire: 'fp32',
  average: false,
  mode: 'all',
  length: 30,
  from: 0,
  phase: 'rs',
  seg: 1,
  chunk: 0,
  ...o,
});
const running: Awaited = { current: { opIndex: 4, step: 10 }, nextOp: 5, lastStep: 10 };
const rsSubject = { op: 'rs', step: 10, rank: 1 };

test('message-check: the sender is the process that joined as the claimed rank', () => {
  assert.equal(checkSender(0, 'tok0', g), undefined);
  assert.match(checkSender(0, 'tok2', g)!, /not sent by the process that joined as rank 0/);
  assert.match(checkSender(0, undefined, g)!, /not sent by/);
  assert.match(checkSender(1, 'x', g)!, /this rank/);
  assert.match(checkSender(3, 'x', g)!, /not in the group/);
  assert.match(checkSender(2, 'tok2', { ...g, peers: new Map() })!, /has not joined/);
});

test('message-check: header, subject and awaited operation must agree', () => {
  assert.equal(checkChunk(meta(), 'tok0', rsSubject, g, running), 'current');
  assert.equal(
    checkChunk(meta({ opIndex: 5, step: 11 }), 'tok0', { ...rsSubject, step: 11 }, g, running),
    'early',
  );
  assert.equal(
    checkChunk(meta({ opIndex: 5 }), 'tok0', rsSubject, g, running),
    'early',
    'same step, next op',
  );
  const reject = (m: ChunkMeta, subject = rsSubject, a = running) => {
    const v = checkChunk(m, 'tok0', subject, g, a);
    assert.equal(typeof v, 'object', `expected a rejection for ${JSON.stringify(m)}`);
    return (v as { reject: string }).reject;
  };
  assert.match(reject(meta({ opIndex: 6, step: 11 }), { ...rsSubject, step: 11 }), /#6 is not awaited/);
  assert.match(
    reject(meta({ opIndex: 5, step: 12 }), { ...rsSubject, step: 12 }),
    /neither step 10 nor the next/,
  );
  assert.match(reject(meta({ opIndex: 5, step: 9 }), { ...rsSubject, step: 9 }), /neither/);
  assert.match(reject(meta(), { ...rsSubject, step: 11 }), /subject step 11/);
  assert.match(reject(meta(), { ...rsSubject, rank: 2 }), /addressed to rank 2/);
  assert.match(reject(meta({ phase: 'ag' })), /ag chunk on a reduce-scatter subject/);
  // all-gather: the subject names the owner, who must be the sender and the segment
  const ag = { op: 'ag', step: 10, rank: 0 };
  assert.equal(checkChunk(meta({ phase: 'ag', seg: 0 }), 'tok0', ag, g, running), 'current');
  assert.match(reject(meta({ phase: 'ag', seg: 2 }), ag), /claims sender 0, segment 2/);
  assert.match(reject(meta({ phase: 'ag', seg: 0 }), { ...ag, rank: 2 }), /rank 2's subject/);
});

test('message-check: early chunks are deduplicated, handed over once, and bounded', () => {
  const e = new EarlyChunks(100, 3);
  const data = new Uint8Array(40);
  e.add(meta({ opIndex: 5, chunk: 0 }), data);
  e.add(meta({ opIndex: 5, chunk: 0 }), data); // a resend of the same chunk
  e.add(meta({ opIndex: 5, chunk: 1 }), data);
  assert.equal(e.heldBytes, 80);
  assert.throws(
    () => e.add(meta({ opIndex: 5, chunk: 2 }), data),
    (err: Error) => err instanceof CollectiveFloodError && err.bytes === 120 && err.from.join() === '0',
  );
  assert.equal(e.take(5).length, 2);
  assert.equal(e.take(5).length, 0);
  const few = new EarlyChunks(1e6, 2);
  few.add(meta({ chunk: 0 }), data);
  few.add(meta({ chunk: 1 }), data);
  assert.throws(() => few.add(meta({ chunk: 2, from: 2 }), data), /rank\(s\) 0, 2/);
});
