// PowerSGD over a real nats-server: exactness at full rank, error feedback on a least-squares problem,
// non-finite gradients, fp16 wire and its scaler, startIter, checkpoint state, input errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ParamSpec } from '../model/index.ts';
import {
  CollectiveArgumentError,
  GradientShapeError,
  PowerSgd,
  PowerSgdStateError,
  type ReduceResult,
} from '../collective/index.ts';
import { bitsEqual, openRanks, values } from './collective-helpers.ts';

const specs: ParamSpec[] = [
  { name: 'layer0.tall.w', shape: [12, 5], kind: 'matrix' },
  { name: 'layer0.wide.w', shape: [4, 9], kind: 'matrix' }, // transposed: M is 9×4
  { name: 'layer1.conv.w', shape: [3, 3, 2, 4], kind: 'matrix' }, // viewed as 18×4
  { name: 'layer1.conv.b', shape: [4], kind: 'bias' },
  { name: 'layer1.ln.g', shape: [7], kind: 'gain' },
  { name: 'embed', shape: [10, 6], kind: 'embedding' },
];
const numel = (s: ParamSpec) => s.shape.reduce((a, b) => a * b, 1);
const gradsFor = (step: number, rank: number, scale = 1) =>
  specs.map((s, i) => values(numel(s), 1000 * step + 10 * rank + i, scale));

function exactMean(all: Float32Array[][], p: number): Float64Array {
  const out = new Float64Array(all[0]![p]!.length);
  for (const g of all) for (let i = 0; i < out.length; i++) out[i]! += g[p]![i]! / all.length;
  return out;
}

test('powersgd: full-rank compression equals the exact mean within 1e-5, bit-identical on every rank (W = 2, 3, 4); extras come back summed', async () => {
  for (const W of [2, 3, 4]) {
    const ranks = await openRanks(W);
    try {
      const ps = ranks.groups.map(
        (_, r) =>
          new PowerSgd(
            specs,
            { rank: 64, startIter: 0, minCompressionRate: 0.1 },
            { rank: r, worldSize: W, seed: 3 },
          ),
      );
      assert.deepEqual(
        ps[0]!.plan.params.map((p) => p.compressed),
        [true, true, true, false, false, false],
      );
      assert.deepEqual(
        ps[0]!.plan.params.filter((p) => p.compressed).map((p) => [p.n, p.m, p.r, p.transposed]),
        [
          [12, 5, 5, false],
          [9, 4, 4, true],
          [18, 4, 4, false],
        ],
      );
      for (let step = 0; step < 4; step++) {
        const all = ranks.groups.map((_, r) => gradsFor(step, r));
        // a per-rank extra (e.g. the step's loss) comes back summed, in the same round as the gradients
        const extras = (r: number) => Float32Array.of(0.5 + r, step);
        const res = await Promise.all(ps.map((p, r) => p.reduce(ranks.groups[r]!, all[r]!, step, extras(r))));
        for (const r of res) assert.deepEqual([...r.extras], [(W * W) / 2, W * step]);
        for (let p = 0; p < specs.length; p++) {
          const mean = exactMean(all, p);
          let worst = 0;
          for (let i = 0; i < mean.length; i++)
            worst = Math.max(worst, Math.abs(res[0]!.grads[p]![i]! - mean[i]!));
          assert.ok(worst < 1e-5, `W=${W} step ${step} ${specs[p]!.name}: max error ${worst}`);
          for (const r of res)
            assert.ok(bitsEqual(r.grads[p]!, res[0]!.grads[p]!), `W=${W} ${specs[p]!.name}: ranks differ`);
        }
        assert.equal(res[0]!.stats.mode, 'powersgd');
      }
    } finally {
      await ranks.close();
    }
  }
});

test('powersgd: on least squares, rank-1 with error feedback reaches the uncompressed loss within 1 %; without it does not', async () => {
  // W = 2 ranks each hold half the rows of an ill-conditioned least-squares problem in X [32, 16].
  const [W, n, m, k, T, lr] = [2, 32, 16, 64, 300, 0.5];
  const Xstar = values(n * m, 99);
  const A = [0, 1].map((w) => {
    const a = values(k * n, 10 + w);
    for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) a[i * n + j]! *= 0.05 ** (j / (n - 1)); // condition ~20
    return a;
  });
  const B = A.map((a, w) => {
    const noise = values(k * m, 50 + w, 0.3);
    const b = new Float32Array(k * m);
    for (let i = 0; i < k; i++)
      for (let c = 0; c < m; c++) {
        let s = noise[i * m + c]!;
        for (let j = 0; j < n; j++) s += a[i * n + j]! * Xstar[j * m + c]!;
        b[i * m + c] = s;
      }
    return b;
  });
  const lossAndGrad = (X: Float64Array, w: number): [number, Float32Array] => {
    const [a, b] = [A[w]!, B[w]!];
    const R = new Float64Array(k * m);
    let L = 0;
    for (let i = 0; i < k; i++)
      for (let c = 0; c < m; c++) {
        let s = -b[i * m + c]!;
        for (let j = 0; j < n; j++) s += a[i * n + j]! * X[j * m + c]!;
        R[i * m + c] = s;
        L += s * s;
      }
    const g = new Float32Array(n * m);
    for (let j = 0; j < n; j++)
      for (let c = 0; c < m; c++) {
        let s = 0;
        for (let i = 0; i < k; i++) s += a[i * n + j]! * R[i * m + c]!;
        g[j * m + c] = s / k;
      }
    return [L / (2 * k), g];
  };
  const train = async (cfg: Record<string, unknown>): Promise<number> => {
    const ranks = await openRanks(W);
    try {
      const ps = ranks.groups.map(
        (_, r) =>
          new PowerSgd(
            [{ name: 'x.w', shape: [n, m], kind: 'matrix' }],
            { startIter: 0, minCompressionRate: 1, ...cfg },
            { rank: r, worldSize: W, seed: 7 },
          ),
      );
      const X = new Float64Array(n * m);
      let loss = 0;
      for (let t = 0; t <= T; t++) {
        const lg = [0, 1].map((w) => lossAndGrad(X, w));
        loss = (lg[0]![0] + lg[1]![0]) / W;
        if (t === T) break;
        const res = await Promise.all(ps.map((p, r) => p.reduce(ranks.groups[r]!, [lg[r]![1]], t)));
        const g = res[0]!.grads[0]!;
        for (let i = 0; i < X.length; i++) X[i]! -= lr * g[i]!;
      }
      return loss;
    } finally {
      await ranks.close();
    }
  };
  const plain = await train({ enabled: false });
  const withEf = await train({ rank: 1 });
  const withoutEf = await train({ rank: 1, errorFeedback: false });
  const fixedQ = await train({ rank: 1, warmStart: false });
  console.log(
    `loss after ${T} steps: uncompressed ${plain.toFixed(5)}, rank-1 with EF ${withEf.toFixed(5)} (random Q each step: ${fixedQ.toFixed(5)}), without EF ${withoutEf.toFixed(5)}`,
  );
  assert.ok(Math.abs(withEf - plain) / plain < 0.01, `with error feedback: ${withEf} vs ${plain}`);
  assert.ok(Math.abs(fixedQ - plain) / plain < 0.01, `with error feedback, random Q: ${fixedQ} vs ${plain}`);
  assert.ok((withoutEf - plain) / plain > 0.01, `without error feedback: ${withoutEf} vs ${plain}`);
});

test("powersgd: a NaN gradient on one rank skips the step on every rank, zeroes only that rank's contaminated error buffer, and is counted", async () => {
  const W = 3;
  const ranks = await openRanks(W);
  try {
    const ps = ranks.groups.map(
      (_, r) =>
        new PowerSgd(
          specs,
          { rank: 2, startIter: 0, minCompressionRate: 1 },
          { rank: r, worldSize: W, seed: 3 },
        ),
    );
    const step = (s: number, all: Float32Array[][]) =>
      Promise.all(ps.map((p, r) => p.reduce(ranks.groups[r]!, all[r]!, s)));
    await step(
      0,
      [0, 1, 2].map((r) => gradsFor(0, r)),
    );
    const before = ps.map((p) => specs.map((s) => Float32Array.from(p.errorBuffer(s.name) ?? [])));
    const all = [0, 1, 2].map((r) => gradsFor(1, r));
    all[1]![0]![3] = NaN; // rank 1, layer0.tall.w
    const res = await step(1, all);
    for (const r of res) {
      assert.equal(r.skipped, true);
      assert.deepEqual(r.nonFinite, ['layer0.tall.w']);
      assert.ok(
        r.grads.every((g) => g.every((v) => v === 0)),
        'a skipped step hands back zeros',
      );
    }
    // rank 1: the contaminated buffer is zero; its other buffers and every other rank's hold e + g
    for (let r = 0; r < W; r++) {
      for (const [i, s] of specs.entries()) {
        const e = ps[r]!.errorBuffer(s.name);
        if (!e) continue;
        if (r === 1 && i === 0)
          assert.ok(
            e.every((v) => v === 0),
            'contaminated buffer zeroed',
          );
        else
          assert.ok(
            e.every((v, j) => v === Math.fround(before[r]![i]![j]! + all[r]![i]![j]!)),
            `rank ${r} ${s.name} keeps e + g`,
          );
      }
    }
    assert.deepEqual(
      ps.map((p) => [p.counters().skippedSteps, p.counters().zeroedErrorBuffers]),
      [
        [1, 0],
        [1, 1],
        [1, 0],
      ],
    );
    // Inf in an uncompressed parameter skips too; the next clean step goes through everywhere
    const inf = [0, 1, 2].map((r) => gradsFor(2, r));
    inf[2]![4]![0] = Infinity;
    assert.ok((await step(2, inf)).every((r) => r.skipped && r.nonFinite[0] === 'layer1.ln.g'));
    const clean = await step(
      3,
      [0, 1, 2].map((r) => gradsFor(3, r)),
    );
    assert.ok(clean.every((r) => !r.skipped && r.grads.every((g) => g.every(Number.isFinite))));
    assert.deepEqual(
      ps.map((p) => p.counters().skippedSteps),
      [2, 2, 2],
    );
  } finally {
    await ranks.close();
  }
});

test('powersgd: startIter runs a plain fp32 all-reduce first (exact mean), then compresses; stats count the bytes', async () => {
  const W = 2;
  const ranks = await openRanks(W);
  try {
    const ps = ranks.groups.map(
      (_, r) =>
        new PowerSgd(
          specs,
          { rank: 1, startIter: 2, minCompressionRate: 1 },
          { rank: r, worldSize: W, seed: 3 },
        ),
    );
    const plan = ps[0]!.plan;
    for (let s = 0; s < 4; s++) {
      const all = [0, 1].map((r) => gradsFor(s, r));
      const res = await Promise.all(ps.map((p, r) => p.reduce(ranks.groups[r]!, all[r]!, s)));
      const st = res[0]!.stats;
      if (s < 2) {
        assert.equal(st.mode, 'plain');
        assert.equal(st.bytesSent, st.bytesRaw);
        for (let p = 0; p < specs.length; p++) {
          const exact = all[0]![p]!.map((v, i) => (v + all[1]![p]![i]!) / 2);
          assert.ok(
            bitsEqual(res[0]!.grads[p]!, exact),
            `${specs[p]!.name}: plain mode is the exact fp32 mean`,
          );
        }
      } else {
        assert.equal(st.mode, 'powersgd');
        assert.equal(st.bytesSent, plan.bytesSent);
        assert.equal(st.compressionRate, plan.compressionRate);
        assert.ok(st.compressionRate > 0.3, `${st.compressionRate}`);
      }
      assert.equal(st.bytesRaw, plan.bytesRaw);
      assert.ok(st.chunks >= (s < 2 ? 2 : 6) && st.ms > 0 && st.wireBytesOut > 0, JSON.stringify(st));
    }
    assert.deepEqual(ps[0]!.counters(), {
      steps: 4,
      plainSteps: 2,
      compressedSteps: 2,
      skippedSteps: 0,
      zeroedErrorBuffers: 0,
      bytesRaw: 4 * plan.bytesRaw,
      bytesSent: 2 * plan.bytesRaw + 2 * plan.bytesSent,
    });
  } finally {
    await ranks.close();
  }
});

test("powersgd: fp16 wire halves P and Q, stays close to fp32; an overflow skips the step and backs off only that resblock's scale", async () => {
  const W = 2;
  const run = async (wire: 'fp16' | 'fp32', scale: number) => {
    const ranks = await openRanks(W);
    try {
      const ps = ranks.groups.map(
        (_, r) =>
          new PowerSgd(
            specs,
            { rank: 2, startIter: 0, minCompressionRate: 1, wire },
            { rank: r, worldSize: W, seed: 3 },
          ),
      );
      const out: ReduceResult[][] = [];
      for (let s = 0; s < 3; s++)
        out.push(await Promise.all(ps.map((p, r) => p.reduce(ranks.groups[r]!, gradsFor(s, r, scale), s))));
      return { out, ps };
    } finally {
      await ranks.close();
    }
  };
  const a = await run('fp32', 1e-3);
  const b = await run('fp16', 1e-3);
  const pb = b.ps[0]!.plan;
  assert.equal(pb.bytesSent, pb.uncompressedElems * 4 + (pb.pElems + pb.qElems) * 2);
  assert.equal(b.out[0]![0]!.stats.bytesSent, pb.bytesSent);
  for (let s = 0; s < 3; s++) {
    for (let p = 0; p < 3; p++) {
      const x = a.out[s]![0]!.grads[p]!;
      const y = b.out[s]![0]!.grads[p]!;
      let num = 0;
      let den = 0;
      for (let i = 0; i < x.length; i++) {
        num += (x[i]! - y[i]!) ** 2;
        den += x[i]! ** 2;
      }
      assert.ok(
        Math.sqrt(num / den) < 1e-2,
        `step ${s} ${specs[p]!.name}: fp16 relative error ${Math.sqrt(num / den)}`,
      );
      assert.ok(bitsEqual(y, b.out[s]![1]!.grads[p]!), 'fp16: ranks agree bit for bit');
    }
  }
  const scales = b.ps[0]!.scales();
  assert.deepEqual(Object.keys(scales), ['layer0', 'layer1']);
  assert.ok(
    Math.abs(scales.layer0! / (2 * 2 ** 13 * 2 ** (3 / 1000)) - 1) < 1e-12,
    `three clean steps grow the scale: ${scales.layer0}`,
  );
  // gradients of ~1e3 times a scale of 2^14 overflow fp16 (max 65504)
  const c = await run('fp16', 1e3);
  assert.ok(
    c.out.every((step) => step.every((r) => r.skipped && r.nonFinite.length === 0)),
    'overflow skips every step on every rank',
  );
  const sc = c.ps[1]!.scales();
  assert.equal(sc.layer0, (2 * 2 ** 13) / Math.SQRT2, 'backed off once (at most once per 125 steps)');
  assert.equal(sc.layer1, (2 * 2 ** 13) / Math.SQRT2);
  assert.ok(
    c.ps[0]!.errorBuffer('layer0.tall.w')!.every(Number.isFinite),
    'finite error buffers keep M after an overflow',
  );
});

test('powersgd: state restores exactly: ranks resumed from saveState continue bit-identically', async () => {
  const W = 2;
  for (const cfg of [
    { warmStart: true, wire: 'fp32' as const },
    { warmStart: false, wire: 'fp16' as const },
  ]) {
    const mk = () =>
      [0, 1].map(
        (r) =>
          new PowerSgd(
            specs,
            { rank: 2, startIter: 1, minCompressionRate: 1, ...cfg },
            { rank: r, worldSize: W, seed: 5 },
          ),
      );
    const steps = async (ps: PowerSgd[], from: number, to: number) => {
      const ranks = await openRanks(W);
      const out: Float32Array[][] = [];
      try {
        for (let s = from; s < to; s++)
          out.push(
            (await Promise.all(ps.map((p, r) => p.reduce(ranks.groups[r]!, gradsFor(s, r, 1e-2), s))))[0]!
              .grads,
          );
      } finally {
        await ranks.close();
      }
      return out;
    };
    const straight = mk();
    const full = await steps(straight, 0, 6);
    const first = mk();
    await steps(first, 0, 3);
    const saved = first.map((p) => p.saveState());
    const resumed = mk();
    resumed.forEach((p, r) => p.loadState(saved[r]));
    assert.deepEqual(resumed[1]!.counters(), first[1]!.counters());
    const rest = await steps(resumed, 3, 6);
    for (let s = 0; s < 3; s++) {
      for (let p = 0; p < specs.length; p++)
        assert.ok(
          bitsEqual(rest[s]![p]!, full[s + 3]![p]!),
          `${JSON.stringify(cfg)} step ${s + 3} ${specs[p]!.name}`,
        );
    }
    assert.deepEqual(resumed[0]!.saveState(), straight[0]!.saveState());
    // a fresh start forgets everything
    resumed[0]!.loadState(undefined);
    assert.equal(resumed[0]!.errorBuffer('layer0.tall.w'), undefined);
  }
});

test('powersgd: bad inputs and mismatched state are rejected with errors that name the problem', async () => {
  assert.throws(
    () => new PowerSgd(specs, { rank: 0 }, { rank: 0, worldSize: 2, seed: 0 }),
    (e: Error) => e instanceof CollectiveArgumentError && /powersgd\.rank/.test(e.message),
  );
  assert.throws(
    () => new PowerSgd(specs, {}, { rank: 2, worldSize: 2, seed: 0 }),
    (e: Error) => e instanceof CollectiveArgumentError && /rank/.test(e.message),
  );
  assert.throws(
    () => new PowerSgd([...specs, specs[0]!], {}, { rank: 0, worldSize: 2, seed: 0 }),
    /not unique/,
  );
  const cfg = { startIter: 0, rank: 1, minCompressionRate: 1 };
  const ranks = await openRanks(2);
  try {
    const p = new PowerSgd(specs, cfg, { rank: 0, worldSize: 2, seed: 1 });
    const g = gradsFor(0, 0);
    await assert.rejects(
      p.reduce(ranks.groups[0]!, g.slice(1), 0),
      (e: Error) => e instanceof CollectiveArgumentError && /6 Float32Arrays/.test(e.message),
    );
    const short = [...g];
    short[2] = new Float32Array(5);
    await assert.rejects(
      p.reduce(ranks.groups[0]!, short, 0),
      (e: Error) =>
        e instanceof GradientShapeError &&
        /layer1\.conv\.w: expected a Float32Array of 72 values, got 5/.test(e.message),
    );
    await assert.rejects(
      p.reduce(ranks.groups[1]!, g, 0),
      (e: Error) => e instanceof CollectiveArgumentError && /does not match/.test(e.message),
    );
    const other = new PowerSgd(specs, cfg, { rank: 1, worldSize: 2, seed: 1 });
    assert.throws(
      () => p.loadState(other.saveState()),
      (e: Error) => e instanceof PowerSgdStateError && /rank 1 of 2/.test(e.message),
    );
    p.loadState(other.saveState(), { allowRankChange: true });
    const renamed = new PowerSgd(
      specs.map((s, i) => (i === 1 ? { ...s, name: 'x' } : s)),
      cfg,
      { rank: 0, worldSize: 2, seed: 1 },
    );
    assert.throws(() => p.loadState(renamed.saveState()), /parameter 1 is x/);
    const q = new PowerSgd(specs, cfg, { rank: 1, worldSize: 2, seed: 1 });
    await Promise.all([p.reduce(ranks.groups[0]!, g, 0), q.reduce(ranks.groups[1]!, gradsFor(0, 1), 0)]);
    const bytes = p.saveState();
    assert.ok(bytes.length > 4 * 60, 'holds the error buffers');
    bytes[bytes.length - 1]! ^= 1;
    assert.throws(() => p.loadState(bytes), /sha256 mismatch/);
    assert.throws(() => p.loadState(new Uint8Array(8)), /shorter than/);
  } finally {
    await ranks.close();
  }
});
