import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  StateChecksumError,
  StateFormatError,
  StateMismatchError,
  decodeState,
  encodeState,
  expectArrays,
} from './state-io.ts';

function sample(): [string, Float32Array][] {
  return [
    ['a.w', new Float32Array([1, -2.5, Math.PI, Number.MIN_VALUE, -0])],
    ['b', new Float32Array(0)],
    ['c.m', Float32Array.from({ length: 1001 }, (_, i) => Math.sin(i) * 1e-7)],
  ];
}

test('state-io: round trip keeps meta, order and every bit', () => {
  const meta = { stage: 'dvae', step: 42, nested: { tau: 0.5, list: [1, 2] } };
  const blob = encodeState(meta, sample());
  const { meta: got, arrays } = decodeState(blob);
  assert.deepEqual(got, meta);
  assert.deepEqual([...arrays.keys()], ['a.w', 'b', 'c.m']);
  for (const [name, data] of sample()) {
    const back = arrays.get(name)!;
    assert.deepEqual(
      new Uint8Array(back.buffer, back.byteOffset, back.byteLength),
      new Uint8Array(data.buffer),
    );
  }
});

test('state-io: decoded arrays do not alias the blob', () => {
  const blob = encodeState({}, [['x', new Float32Array([1, 2, 3])]]);
  const { arrays } = decodeState(blob);
  blob.fill(0);
  assert.deepEqual([...arrays.get('x')!], [1, 2, 3]);
});

test('state-io: decodes from an unaligned view of a larger buffer', () => {
  const blob = encodeState({ k: 1 }, sample());
  const big = new Uint8Array(blob.length + 3);
  big.set(blob, 1);
  const { arrays } = decodeState(big.subarray(1, 1 + blob.length));
  assert.equal(arrays.get('c.m')!.length, 1001);
});

test('state-io: a flipped payload bit fails the checksum', () => {
  const blob = encodeState({}, sample());
  blob[blob.length - 5]! ^= 0x10;
  assert.throws(() => decodeState(blob), StateChecksumError);
});

test('state-io: bad magic, version, truncation and header are named', () => {
  const blob = encodeState({}, sample());
  assert.throws(
    () => decodeState(new Uint8Array(4)),
    (e: unknown) => e instanceof StateFormatError && /prefix/.test(e.message),
  );
  const badMagic = blob.slice();
  badMagic[0] = 0;
  assert.throws(
    () => decodeState(badMagic),
    (e: unknown) => e instanceof StateFormatError && /magic/.test(e.message),
  );
  const badVersion = blob.slice();
  badVersion[4] = 9;
  assert.throws(
    () => decodeState(badVersion),
    (e: unknown) => e instanceof StateFormatError && /version 9/.test(e.message),
  );
  assert.throws(
    () => decodeState(blob.subarray(0, blob.length - 4)),
    (e: unknown) => e instanceof StateFormatError && /payload/.test(e.message),
  );
  const badHeader = blob.slice();
  badHeader[12] = 0x7b + 1; // first header byte is '{'
  assert.throws(
    () => decodeState(badHeader),
    (e: unknown) => e instanceof StateFormatError && /JSON/.test(e.message),
  );
});

test('state-io: duplicate names and non-float arrays are refused on encode', () => {
  const x = new Float32Array(1);
  assert.throws(
    () =>
      encodeState({}, [
        ['a', x],
        ['a', x],
      ]),
    /duplicate array name "a"/,
  );
  assert.throws(
    () => encodeState({}, [['a', new Float64Array(1) as unknown as Float32Array]]),
    /not a Float32Array/,
  );
});

test('state-io: expectArrays lists every missing, extra and wrong-length array', () => {
  const { arrays } = decodeState(encodeState({}, sample()));
  expectArrays(arrays, [
    ['a.w', 5],
    ['b', 0],
    ['c.m', 1001],
  ]);
  assert.throws(
    () =>
      expectArrays(arrays, [
        ['a.w', 4],
        ['b', 0],
        ['d', 2],
      ]),
    (e: unknown) =>
      e instanceof StateMismatchError &&
      e.problems.length === 3 &&
      /"a.w" has 5 values, expected 4/.test(e.message) &&
      /missing array "d"/.test(e.message) &&
      /unexpected array "c.m"/.test(e.message),
  );
});

test('state-io: a Node Buffer (a view into a pool) decodes to the same floats', () => {
  const blob = encodeState({ k: 1 }, [['x', Float32Array.of(1, 2, 3)]]);
  const pooled = Buffer.concat([Buffer.from('padding!'), Buffer.from(blob)]).subarray(8);
  assert.deepEqual([...decodeState(pooled).arrays.get('x')!], [1, 2, 3]);
});
