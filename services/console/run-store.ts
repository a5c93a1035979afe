// What a run has stored: its committed checkpoints (parts with sizes and sha256), the sample grid of every
// checkpoint, and each stage's curves (read from the newest checkpoint, which carries the whole history).
import { CURVES_PART, RunCurves, SAMPLES_PART, sha256, type CheckpointStore } from '../../store/index.ts';
import type { CheckpointInfo, Curves, SampleInfo } from './api-types.ts';

/** The training stages, in run order. */
export const STAGES = ['dvae', 'transformer'] as const;
export type Stage = (typeof STAGES)[number];

/** Points per series sent to a chart: longer curves are averaged in buckets (the last point kept as is). */
export const MAX_CURVE_POINTS = 2000;

/** Committed checkpoints of both stages, oldest first (pruned ones are gone). */
export async function listCheckpoints(ck: CheckpointStore, runId: string): Promise<CheckpointInfo[]> {
  const out: CheckpointInfo[] = [];
  for (const stage of STAGES) {
    for (const step of await ck.committedSteps(runId, stage)) {
      const m = await ck.manifestAt(runId, stage, step).catch(() => undefined);
      if (!m) continue;
      out.push({
        stage,
        step,
        createdAt: m.createdAt,
        loss: typeof m.meta.loss === 'number' ? m.meta.loss : null,
        worldSize: typeof m.meta.worldSize === 'number' ? m.meta.worldSize : null,
        parts: m.parts,
        samples: (m.meta.samples as Record<string, unknown> | undefined) ?? null,
      });
    }
  }
  return out;
}

/** Every stored sample grid, oldest first, with its rows' labels. */
export async function listSamples(
  ck: CheckpointStore,
  runId: string,
  checkpoints: CheckpointInfo[],
): Promise<SampleInfo[]> {
  const out: SampleInfo[] = [];
  for (const stage of STAGES) {
    const rowsOf = (step: number) =>
      checkpoints.find((c) => c.stage === stage && c.step === step)?.samples?.rows ??
      [...checkpoints].reverse().find((c) => c.stage === stage && c.samples)?.samples?.rows;
    for (const { step } of await ck.partsNamed(runId, stage, SAMPLES_PART))
      out.push({ stage, step, rows: (rowsOf(step) as string[] | undefined) ?? [] });
  }
  return out;
}

/** One grid's PNG and its sha256 (verified against the manifest while the checkpoint is still kept). */
export async function readSamples(
  ck: CheckpointStore,
  runId: string,
  stage: Stage,
  step: number,
): Promise<{ png: Uint8Array; sha256: string } | undefined> {
  const m = await ck.manifestAt(runId, stage, step).catch(() => undefined);
  if (m?.parts.some((p) => p.name === SAMPLES_PART)) {
    const png = await ck.loadPart(m, SAMPLES_PART);
    return { png, sha256: m.parts.find((p) => p.name === SAMPLES_PART)!.sha256 };
  }
  const png = await ck.backend.getObject(ck.partKey(runId, stage, step, SAMPLES_PART));
  return png ? { png, sha256: sha256(png) } : undefined;
}

/** Bucket means so that a chart gets at most `max` points; the last point stays exact. */
export function downsample(
  steps: number[],
  series: Record<string, number[]>,
  max = MAX_CURVE_POINTS,
): { steps: number[]; series: Record<string, number[]> } {
  if (steps.length <= max) return { steps, series };
  const k = Math.ceil(steps.length / (max - 1));
  const idx: [number, number][] = [];
  for (let a = 0; a < steps.length - 1; a += k) idx.push([a, Math.min(a + k, steps.length - 1)]);
  idx.push([steps.length - 1, steps.length]);
  const mean = (v: number[], [a, b]: [number, number]) => {
    let s = 0;
    let n = 0;
    for (let i = a; i < b; i++)
      if (Number.isFinite(v[i])) {
        s += v[i]!;
        n++;
      }
    return n ? s / n : NaN;
  };
  return {
    steps: idx.map(([, b]) => steps[b - 1]!),
    series: Object.fromEntries(Object.entries(series).map(([name, v]) => [name, idx.map((r) => mean(v, r))])),
  };
}

/** Sums over a stage's stored steps: gradient bytes (what an uncompressed all-reduce would send, and what
 *  was sent; rank 0's, every rank's are alike), seconds of training steps, and the sample grids drawn. */
export interface StageTotals {
  bytesRaw: number;
  bytesSent: number;
  stepSeconds: number;
  sampleSeconds: number;
  grids: number;
}

/** Kept per checkpoint: a committed checkpoint never changes. */
const totalsCache = new Map<string, Promise<StageTotals>>();

export function stageTotals(
  ck: CheckpointStore,
  runId: string,
  stage: Stage,
  step: number,
): Promise<StageTotals> {
  const key = `${runId}/${stage}/${step}`;
  let p = totalsCache.get(key);
  if (!p) {
    p = (async () => {
      const m = await ck.manifestAt(runId, stage, step);
      const none = { bytesRaw: 0, bytesSent: 0, stepSeconds: 0, sampleSeconds: 0, grids: 0 };
      if (!m?.parts.some((x) => x.name === CURVES_PART)) return none;
      const { series } = RunCurves.decode(await ck.loadPart(m, CURVES_PART)).toJSON();
      const finite = (v: number[] | undefined) => (v ?? []).filter(Number.isFinite);
      const sum = (v: number[] | undefined) => finite(v).reduce((a, b) => a + b, 0);
      return {
        bytesRaw: sum(series.bytesRaw),
        bytesSent: sum(series.bytesSent),
        stepSeconds: sum(series.seconds),
        sampleSeconds: sum(series.sampleSeconds),
        grids: finite(series.sampleSeconds).length,
      };
    })();
    p.catch(() => totalsCache.delete(key));
    if (totalsCache.size > 256) totalsCache.clear();
    totalsCache.set(key, p);
  }
  return p;
}

/** A stage's curves from its newest committed checkpoint (empty before the first one). */
export async function readCurves(ck: CheckpointStore, runId: string, stage: Stage): Promise<Curves> {
  const m = await ck.latest(runId, stage);
  if (!m || !m.parts.some((p) => p.name === CURVES_PART))
    return { stage, step: m?.step ?? 0, steps: [], series: {} };
  const c = RunCurves.decode(await ck.loadPart(m, CURVES_PART)).toJSON();
  const d = downsample(c.steps, c.series);
  return {
    stage,
    step: m.step,
    steps: d.steps,
    // JSON has no NaN: a missing value is null (a gap in the chart).
    series: Object.fromEntries(
      Object.entries(d.series).map(([k, v]) => [k, v.map((x) => (Number.isFinite(x) ? x : null))]),
    ),
  };
}
