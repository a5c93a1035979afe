import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  applyPlan,
  areaResize,
  areaResizeUint8,
  cropRgb,
  flipHorizontal,
  ImageShapeError,
  planDvae,
  planTransformer,
  preprocessDvae,
  preprocessTransformer,
  ResolutionError,
  roundHalfEven,
} from './preprocess.ts';
import { rngFor } from '../random/index.ts';

/** A grey image (r = g = b) from rows of values. */
function grey(rows: number[][]): { rgb: Uint8Array; w: number; h: number } {
  const h = rows.length;
  const w = rows[0].length;
  const rgb = new Uint8Array(w * h * 3);
  rows.flat().forEach((v, i) => rgb.fill(v, i * 3, i * 3 + 3));
  return { rgb, w, h };
}

/** Channel 0 of an RGB buffer. */
function red(a: ArrayLike<number>): number[] {
  return Array.from({ length: a.length / 3 }, (_, i) => a[i * 3]);
}

/** An image whose pixels encode their coordinates, so crops and flips are visible. */
function coords(w: number, h: number): Uint8Array {
  const rgb = new Uint8Array(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const p = (y * w + x) * 3;
      rgb[p] = x;
      rgb[p + 1] = y;
      rgb[p + 2] = (x * 7 + y * 13) & 255;
    }
  }
  return rgb;
}

test('preprocess: AREA resize matches hand-computed area averages', () => {
  // 4 → 2: each output averages two whole pixels.
  let g = grey([[0, 10, 20, 40]]);
  assert.deepEqual(red(areaResize(g.rgb, 4, 1, 2, 1)), [5, 30]);
  // 3 → 2 (scale 1.5): out0 = (1·0 + ½·30) / 1.5 = 10, out1 = (½·30 + 1·60) / 1.5 = 50.
  g = grey([[0, 30, 60]]);
  assert.deepEqual(red(areaResize(g.rgb, 3, 1, 2, 1)), [10, 50]);
  // 3×3 → 2×2 with v = 3·(3y + x): weights {1, ½} per axis, divided by 2.25.
  // (0,0) = (0 + ½·3 + ½·9 + ¼·12) / 2.25 = 4; (1,0) = (½·3 + 6 + ¼·12 + ½·15) / 2.25 = 8;
  // (0,1) = (½·9 + ¼·12 + 18 + ½·21) / 2.25 = 16; (1,1) = (¼·12 + ½·15 + ½·21 + 24) / 2.25 = 20.
  g = grey([
    [0, 3, 6],
    [9, 12, 15],
    [18, 21, 24],
  ]);
  const r = red(areaResize(g.rgb, 3, 3, 2, 2));
  [4, 8, 16, 20].forEach((v, i) => assert.ok(Math.abs(r[i] - v) < 1e-12, `pixel ${i}: ${r[i]} ≠ ${v}`));
  // Upsampling 2 → 3 (scale ⅔): out1 covers ⅓ of each input pixel → (0 + 90) / 2 = 45.
  g = grey([[0, 90]]);
  assert.deepEqual(red(areaResize(g.rgb, 2, 1, 3, 1)), [0, 45, 90]);
  // n → n is the identity.
  const img = coords(5, 4);
  assert.deepEqual(areaResizeUint8(img, 5, 4, 5, 4), img);
});

test('preprocess: AREA rounding is half to even (tf.rint), decided exactly', () => {
  const one = (a: number, b: number): number => areaResizeUint8(grey([[a, b]]).rgb, 2, 1, 1, 1)[0];
  assert.equal(one(1, 2), 2); // 1.5 → 2
  assert.equal(one(2, 3), 2); // 2.5 → 2
  assert.equal(one(0, 1), 0); // 0.5 → 0
  assert.equal(one(254, 255), 254); // 254.5 → 254
  assert.equal(one(255, 255), 255);
  const three = (a: number, b: number, c: number): number =>
    areaResizeUint8(grey([[a, b, c]]).rgb, 3, 1, 1, 1)[0];
  assert.equal(three(0, 0, 1), 0); // ⅓
  assert.equal(three(0, 1, 1), 1); // ⅔
  assert.equal(roundHalfEven(22.5), 22);
  assert.equal(roundHalfEven(23.5), 24);
  assert.equal(roundHalfEven(13.5), 14);
  assert.equal(roundHalfEven(288), 288);
  assert.equal(roundHalfEven(2.4), 2);
});

test('preprocess: separable AREA equals the direct 2-D area integral', () => {
  const w = 37;
  const h = 23;
  const rgb = new Uint8Array(w * h * 3).map((_, i) => (i * 2654435761) >>> 24);
  for (const [ow, oh] of [
    [10, 7],
    [16, 16],
    [50, 31],
  ]) {
    const got = areaResize(rgb, w, h, ow, oh);
    const sx = w / ow;
    const sy = h / oh;
    const overlap = (a0: number, a1: number, b0: number, b1: number): number =>
      Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));
    for (let oy = 0; oy < oh; oy++) {
      for (let ox = 0; ox < ow; ox++) {
        for (let c = 0; c < 3; c++) {
          let s = 0;
          for (let y = 0; y < h; y++) {
            const fy = overlap(oy * sy, (oy + 1) * sy, y, y + 1);
            if (fy === 0) continue;
            for (let x = 0; x < w; x++)
              s += fy * overlap(ox * sx, (ox + 1) * sx, x, x + 1) * rgb[(y * w + x) * 3 + c];
          }
          const want = s / (sx * sy);
          assert.ok(
            Math.abs(got[(oy * ow + ox) * 3 + c] - want) < 1e-9,
            `${ow}×${oh} at (${ox}, ${oy}, ${c})`,
          );
        }
      }
    }
  }
});

test('preprocess: dVAE draws stay in the paper ranges (500×375 → 256)', () => {
  const ts = new Set<number>();
  const flips = new Set<boolean>();
  for (let s = 0; s < 300; s++) {
    const p = planDvae(500, 375, 256, rngFor(s));
    assert.equal(p.square.side, 375);
    assert.equal(p.square.y, 0);
    assert.ok(p.square.x >= 0 && p.square.x <= 125);
    // t_min = min(375, round(9/8·256) = 288), t_max = min(375, round(12/8·256) = 384) = 375.
    assert.ok(p.t >= 288 && p.t <= 375, `t = ${p.t}`);
    assert.ok(p.crop.x >= 0 && p.crop.x <= p.t - 256 && p.crop.y >= 0 && p.crop.y <= p.t - 256);
    ts.add(p.t);
    flips.add(p.flip);
  }
  assert.ok(ts.size > 40, 't varies over its range');
  assert.deepEqual([...flips].sort(), [false, true]);
  // A large image: t_max = round(12/8·256) = 384 caps it.
  for (let s = 0; s < 50; s++) assert.ok(planDvae(1000, 800, 256, rngFor(s)).t <= 384);
});

test('preprocess: transformer draws are centred, t ≤ 9/8·res, never flipped', () => {
  const xs = new Set<number>();
  for (let s = 0; s < 300; s++) {
    const p = planTransformer(500, 375, 256, rngFor(s));
    // slack 125: offset ∈ [⌊375/8⌋ = 46, max(47, ⌊625/8⌋ = 78)) = [46, 77].
    assert.ok(p.square.x >= 46 && p.square.x <= 77, `x = ${p.square.x}`);
    assert.equal(p.square.y, 0);
    assert.ok(p.t >= 256 && p.t <= 288, `t = ${p.t}`);
    assert.equal(p.flip, false);
    xs.add(p.square.x);
  }
  assert.ok(xs.has(46) && xs.has(77), 'both ends of the offset range occur');
  // Portrait: the vertical axis gets the centred offset.
  const p = planTransformer(375, 500, 256, rngFor(1));
  assert.ok(p.square.y >= 46 && p.square.y <= 77 && p.square.x === 0);
});

test('preprocess: pipelines compose crop → AREA → round → crop (→ flip) and are deterministic', () => {
  const w = 40;
  const h = 30;
  const img = coords(w, h);
  for (let s = 0; s < 20; s++) {
    const plan = planDvae(w, h, 16, rngFor(s, 'x'));
    const sq = cropRgb(img, w, h, plan.square.x, plan.square.y, plan.square.side, plan.square.side);
    const resized = areaResizeUint8(sq, plan.square.side, plan.square.side, plan.t, plan.t);
    let want = cropRgb(resized, plan.t, plan.t, plan.crop.x, plan.crop.y, 16, 16);
    if (plan.flip) want = flipHorizontal(want, 16, 16);
    assert.deepEqual(preprocessDvae(img, w, h, 16, rngFor(s, 'x')), want);
    assert.deepEqual(applyPlan(img, w, h, 16, plan), want);
  }
  assert.deepEqual(
    preprocessTransformer(img, w, h, 16, rngFor(5)),
    preprocessTransformer(img, w, h, 16, rngFor(5)),
  );
  assert.notDeepEqual(preprocessDvae(img, w, h, 16, rngFor(5)), preprocessDvae(img, w, h, 16, rngFor(6)));
});

test('preprocess: at res = side (shapes 32 → 32) dVAE yields the image or its mirror, transformer the image', () => {
  const img = coords(32, 32);
  const mirrored = flipHorizontal(img, 32, 32);
  const seen = new Set<string>();
  for (let s = 0; s < 16; s++) {
    const out = preprocessDvae(img, 32, 32, 32, rngFor(s));
    const same = Buffer.from(out).equals(Buffer.from(img));
    assert.ok(same || Buffer.from(out).equals(Buffer.from(mirrored)));
    seen.add(same ? 'same' : 'mirror');
    assert.deepEqual(preprocessTransformer(img, 32, 32, 32, rngFor(s)), img);
  }
  assert.equal(seen.size, 2);
  // The output is a copy, never the caller's buffer.
  assert.notEqual(preprocessTransformer(img, 32, 32, 32, rngFor(0)), img);
});

test('preprocess: an image smaller than res is resized up (our extension), bad input is named', () => {
  const img = coords(20, 24);
  assert.equal(preprocessDvae(img, 20, 24, 32, rngFor(0)).length, 32 * 32 * 3);
  assert.equal(preprocessTransformer(img, 20, 24, 32, rngFor(0)).length, 32 * 32 * 3);
  assert.throws(() => preprocessDvae(img, 20, 20, 16, rngFor(0)), ImageShapeError);
  assert.throws(() => preprocessTransformer(img, 20, 24, 0, rngFor(0)), ResolutionError);
  assert.throws(() => areaResize(img, 20, 24, 2.5, 3), ResolutionError);
});
