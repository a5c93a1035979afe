// The compression rate of real model configs: counted from the shapes (paper-12b, never allocated) against
// the paper's formula, and measured on the wire for the `shapes` models.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadSpec } from '../config/index.ts';
import { planCompression, PowerSgd } from '../collective/index.ts';
import { dvaeParamSpecs, type ParamSpec, transformerParamSpecs } from '../model/index.ts';
import { openRanks, values } from './collective-helpers.ts';

const numel = (s: ParamSpec) => s.shape.reduce((a, b) => a * b, 1);

test('compression-rate: one paper-12b transformer layer at r = 896, fp16 wire, matches the paper formula', () => {
  const spec = loadSpec('paper-12b');
  const d = spec.transformer.dModel;
  const r = spec.powersgd.rank;
  assert.deepEqual([d, r, spec.powersgd.wire], [3968, 896, 'fp16']);
  const layer = transformerParamSpecs(spec.transformer, spec.dvae).filter((s) =>
    s.name.startsWith('layer0.'),
  );
  const matrices = layer.filter((s) => s.kind === 'matrix');
  assert.deepEqual(
    matrices.map((s) => s.shape),
    [
      [d, 3 * d],
      [d, d],
      [d, 4 * d],
      [4 * d, d],
    ],
  );

  // the paper: 1 − 5r/(8·d_model) ≈ 86 % — the rate of an MLP matrix (d × 4d) sent as fp16 P, Q against fp32
  const mlp = planCompression(
    matrices.filter((s) => s.name.includes('.mlp.')),
    spec.powersgd,
  );
  assert.ok(Math.abs(mlp.compressionRate - (1 - (5 * r) / (8 * d))) < 1e-12, `${mlp.compressionRate}`);
  assert.equal(Math.round(mlp.compressionRate * 100), 86);
  // all four matrices of the layer: 1 − 2r/(3d) ≈ 85 % (the review's figure)
  const four = planCompression(matrices, spec.powersgd);
  assert.ok(four.params.every((p) => p.compressed && p.r === r));
  assert.ok(Math.abs(four.compressionRate - (1 - (2 * r) / (3 * d))) < 1e-12, `${four.compressionRate}`);
  assert.equal(Math.round(four.compressionRate * 100), 85);
  // the whole layer: gains and biases ride along uncompressed in fp32
  const whole = planCompression(layer, spec.powersgd);
  const vectors = layer.filter((s) => s.kind !== 'matrix').reduce((a, s) => a + numel(s), 0);
  assert.equal(whole.uncompressedElems, vectors);
  assert.equal(whole.bytesSent, 4 * vectors + 2 * 16 * d * r);
  console.log(
    `paper-12b layer, r=${r}, fp16: MLP ${(mlp.compressionRate * 100).toFixed(2)} % (paper 1−5r/8d), 4 matrices ${(four.compressionRate * 100).toFixed(2)} %, whole layer ${(whole.compressionRate * 100).toFixed(2)} %`,
  );
});

test('compression-rate: the bytes measured on the wire for the shapes models equal the formula for their shapes', async () => {
  const spec = loadSpec('shapes');
  const cfg = { ...spec.powersgd, startIter: 0 };
  const W = 2;
  for (const [model, specs] of [
    ['transformer', transformerParamSpecs(spec.transformer, spec.dvae)],
    ['dvae', dvaeParamSpecs(spec.dvae)],
  ] as const) {
    // the formula, from the shapes alone: uncompressed fp32 + (n + m)·r per compressed matrix
    let expected = 0;
    let raw = 0;
    for (const s of specs) {
      raw += 4 * numel(s);
      const cols = s.shape[s.shape.length - 1]!;
      const rows = numel(s) / cols;
      const [n, m] = rows >= cols ? [rows, cols] : [cols, rows];
      const r = Math.min(cfg.rank, m);
      const compress = s.kind === 'matrix' && m > 1 && (n + m) * r * cfg.minCompressionRate < n * m;
      expected += compress ? (n + m) * r * (cfg.wire === 'fp16' ? 2 : 4) : 4 * numel(s);
    }
    const ranks = await openRanks(W);
    try {
      const ps = ranks.groups.map((_, rank) => new PowerSgd(specs, cfg, { rank, worldSize: W, seed: 1 }));
      const res = await Promise.all(
        ps.map((p, rank) =>
          p.reduce(
            ranks.groups[rank]!,
            specs.map((s, i) => values(numel(s), 31 * rank + i, 1e-3)),
            0,
          ),
        ),
      );
      const st = res[0]!.stats;
      assert.equal(st.mode, 'powersgd');
      assert.equal(st.bytesRaw, raw);
      assert.equal(st.bytesSent, expected, `${model}: measured ${st.bytesSent} B, formula ${expected} B`);
      assert.equal(st.compressionRate, 1 - expected / raw);
      // what left this rank: reduce-scatter (W−1)/W and all-gather 1/W of every payload (+ the flags)
      if (st.resent === 0) assert.equal(st.wireBytesOut, st.bytesSent + st.controlBytes);
      console.log(
        `${model} (shapes): ${(raw / 1e6).toFixed(2)} MB raw → ${(expected / 1e6).toFixed(3)} MB sent, compression ${(st.compressionRate * 100).toFixed(1)} %`,
      );
    } finally {
      await ranks.close();
    }
  }
});
