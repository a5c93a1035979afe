import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ShapesDataset } from './shapes-dataset.ts';
import { sceneCaptions, sceneCompositions, sceneItem } from './shapes-scenes.ts';
import {
  EXTRA_COLORS,
  EXTRA_SHAPE_KINDS,
  HELD_OUT,
  isHeldOut,
  renderScene,
  renderShape,
  shapeCaptions,
  shapeItem,
  TRAIN_COMPOSITIONS,
} from './shapes.ts';

const all = { extraColors: 6, extraShapes: 3, maxShapes: 3 };

test('shapes scenes: with the default options a scene is the single-shape item, image and captions', () => {
  const o = { extraColors: 0, extraShapes: 0, maxShapes: 1 };
  assert.deepEqual(sceneCompositions(o), TRAIN_COMPOSITIONS);
  for (let i = 0; i < 300; i += 7) {
    const [s, ...rest] = sceneItem(i, 1234, 32, o);
    assert.equal(rest.length, 0);
    assert.deepEqual(s, shapeItem(i, 'train', 1234));
    assert.deepEqual(sceneCaptions([s!]), shapeCaptions(s!));
  }
});

test('shapes scenes: no held-out pair in any shape of any scene, whatever the levers', () => {
  const list = sceneCompositions(all);
  assert.equal(list.length, (12 * 6 - HELD_OUT.length) * 2 * 9);
  for (let i = 0; i < 3000; i++) for (const s of sceneItem(i, 7, 32, all)) assert.equal(isHeldOut(s), false);
  // The levers really add colours and kinds, each of them with the evaluation's kinds and colours.
  const seen = new Set(list.map((c) => `${c.color}/${c.shape}`));
  for (const c of Object.keys(EXTRA_COLORS)) assert.ok(seen.has(`${c}/square`), c);
  for (const k of EXTRA_SHAPE_KINDS) assert.ok(seen.has(`yellow/${k}`), k);
});

test('shapes scenes: several shapes per image never touch, and the caption names each', () => {
  const S = 32;
  let multi = 0;
  for (let i = 0; i < 400; i++) {
    const scene = sceneItem(i, 11, S, { extraColors: 0, extraShapes: 0, maxShapes: 3 });
    assert.ok(scene.length >= 1 && scene.length <= 3);
    if (scene.length > 1) multi++;
    const owner = new Int8Array(S * S).fill(-1);
    scene.forEach((s, k) => {
      const rgb = renderShape(s, S);
      for (let p = 0; p < S * S; p++) {
        if (rgb[3 * p] === 255 && rgb[3 * p + 1] === 255 && rgb[3 * p + 2] === 255) continue;
        const [x, y] = [p % S, Math.floor(p / S)];
        for (let dy = -1; dy <= 1; dy++)
          for (let dx = -1; dx <= 1; dx++) {
            const q = (y + dy) * S + x + dx;
            if (x + dx < 0 || x + dx >= S || y + dy < 0 || y + dy >= S) continue;
            assert.ok(owner[q] === -1 || owner[q] === k, `scene ${i}: shapes ${owner[q]} and ${k} touch`);
          }
        owner[p] = k;
      }
    });
    const [caption] = sceneCaptions(scene);
    for (const s of scene)
      assert.ok(caption!.includes(`${s.size} ${s.color} ${s.shape} at the ${s.position}`));
    assert.equal(caption!.split(' and ').length, scene.length);
  }
  assert.ok(multi > 150, `${multi} of 400 scenes have more than one shape`);
});

test('shapes scenes: the dataset renders scenes for training and single held-out shapes for evaluation', async () => {
  const cfg = { kind: 'shapes' as const, count: 64, canvas: 32, seed: 3, ...all };
  const train = new ShapesDataset(cfg, 'train');
  const held = new ShapesDataset(cfg, 'heldout');
  for (let i = 0; i < 64; i++) {
    const item = await train.get(i);
    assert.deepEqual(item.rgb, renderScene(train.scene(i), 32));
    assert.ok((await train.captions(i)).includes(item.caption));
  }
  for (let i = 0; i < held.size; i++) {
    assert.equal(held.scene(i).length, 1);
    assert.equal(isHeldOut(held.spec(i)), true);
  }
});
