import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ParamSpec } from '../model/index.ts';
import { hostHash, layoutOf, paramPieces, pieceSpecs } from './host-layout.ts';

const h = (id: string) => {
  const [hi, lo] = hostHash(id);
  return hi * 0x10000 + lo;
};

test('host-layout: hosts in order of first appearance, local index within each', () => {
  assert.deepEqual(layoutOf([h('a'), h('b'), h('a'), h('b')]), {
    hosts: 2,
    perHost: 2,
    hostOf: [0, 1, 0, 1],
    localOf: [0, 0, 1, 1],
  });
  assert.deepEqual(layoutOf([h('b'), h('b')]), { hosts: 1, perHost: 2, hostOf: [0, 0], localOf: [0, 1] });
  const uneven = layoutOf([h('a'), h('a'), h('a'), h('b')]);
  assert.deepEqual(
    [uneven.hosts, uneven.perHost, uneven.hostOf, uneven.localOf],
    [4, 1, [0, 1, 2, 3], [0, 0, 0, 0]],
  );
  assert.deepEqual(uneven.uneven, { host0: 3, host1: 1 });
  assert.notEqual(h('worker-1'), h('worker-2'));
});

test('host-layout: pieces cover every parameter once, as row blocks where there are enough rows', () => {
  const specs: ParamSpec[] = [
    { name: 'conv', shape: [3, 3, 4, 8], kind: 'matrix' }, // 36 rows of 8
    { name: 'bias', shape: [5], kind: 'bias' },
    { name: 'wide', shape: [1, 6], kind: 'matrix' }, // one row: split by elements
  ];
  for (const G of [1, 2, 3, 4]) {
    const all = [...Array(G).keys()].map((l) => paramPieces(specs, G, l));
    specs.forEach((s, i) => {
      const numel = s.shape.reduce((a, b) => a * b, 1);
      const mine = all.flatMap((ps) => ps.filter((p) => p.index === i)).sort((a, b) => a.offset - b.offset);
      let at = 0;
      for (const p of mine) {
        assert.equal(p.offset, at, `${s.name} G=${G}: contiguous`);
        at += p.length;
      }
      assert.equal(at, numel, `${s.name} G=${G}: covered`);
    });
  }
  const two = paramPieces(specs, 2, 1);
  assert.deepEqual(two[0], { index: 0, name: 'conv', offset: 18 * 8, length: 18 * 8 });
  assert.deepEqual(
    pieceSpecs(specs, two).map((s) => s.shape),
    [[18, 8], [3], [3]],
  );
  assert.deepEqual(
    pieceSpecs(specs, paramPieces(specs, 1, 0)).map((s) => s.shape),
    specs.map((s) => s.shape),
  );
});
