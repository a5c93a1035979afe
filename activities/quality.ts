// Rank 0's quality measurements at each checkpoint (eval/quality-probe.ts), wired to the run: the probe of the
// stage (the transformer's reads the frozen dVAE and the tokenizer of the run), a `quality.measure` span
// with the figures as attributes, the `dalle.quality.*` gauges, and a log line. A measurement is an
// observation, never a reason to fail training: errors are logged and the run goes on.
import type { RunSpec } from '../config/index.ts';
import { dvaeProbe, qualityLine, transformerProbe, type QualityProbe } from '../eval/index.ts';
import type { CheckpointStore } from '../store/index.ts';
import { ATTR, dalleMetrics, withSpan, type QualityAttributes } from '../telemetry/index.ts';
import { encodedData } from './encoded.ts';
import { frozenDvae } from './encode-dataset.ts';
import type { QualityPoint, StageName, TrainShardInput } from '../contract/index.ts';

interface Deps {
  checkpoints: CheckpointStore;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

export const QUALITY_SPAN = 'quality.measure';

export async function createQualityProbe(
  deps: Deps,
  stage: StageName,
  spec: RunSpec,
  runId: string,
): Promise<QualityProbe | undefined> {
  const o = { examples: spec.train.qualityExamples, samples: spec.train.qualitySamples };
  // The reranker has no probe of its own: `dalle eval` scores captions against images with it.
  if (o.examples === 0 || stage === 'rerank') return undefined;
  try {
    if (stage === 'dvae') return await dvaeProbe(spec, o);
    const m = await deps.checkpoints.resolve(runId, 'dvae');
    if (!m) throw new Error(`run ${runId} has no committed dVAE checkpoint`);
    const dvae = await frozenDvae(deps.checkpoints, m, spec);
    const params = dvae.params();
    dvae.dispose();
    const { tokenizer } = await encodedData(deps.checkpoints, runId);
    return await transformerProbe(spec, params, tokenizer, o);
  } catch (e) {
    deps.log(`quality probe unavailable for ${stage}; training goes on without it`, { error: String(e) });
    return undefined;
  }
}

function record(runId: string, q: QualityPoint): Record<string, number> {
  const m = dalleMetrics();
  const a = (split: string): QualityAttributes => ({
    'dalle.run_id': runId,
    'dalle.stage': q.stage,
    'dalle.quality.split': split,
  });
  const attrs: Record<string, number> = { 'dalle.quality.seconds': q.seconds };
  if (q.dvae) {
    m.codesUsed.record(q.dvae.codesUsed, a(q.dvae.split));
    attrs['dalle.quality.codes_used'] = q.dvae.codesUsed;
    attrs['dalle.quality.codebook_perplexity'] = q.dvae.perplexity;
    attrs['dalle.quality.reconstruction_mse'] = q.dvae.mse;
    if (q.dvae.accuracy) {
      m.reconstructionAccuracy.record(q.dvae.accuracy.all, a(q.dvae.split));
      attrs['dalle.quality.reconstruction_accuracy'] = q.dvae.accuracy.all;
    }
  }
  for (const [split, v] of Object.entries(q.transformer?.captionInformation ?? {})) {
    m.captionInformation.record(v, a(split));
    attrs[`dalle.quality.caption_information.${split}`] = v;
  }
  const s = q.transformer?.samples;
  if (s) {
    for (const [split, acc] of [
      ['seen', s.seen],
      ['heldOut', s.heldOut],
    ] as const) {
      m.sampleAccuracy.record(acc.all, a(split));
      attrs[`dalle.quality.sample_accuracy.${split}`] = acc.all;
    }
  }
  return attrs;
}

/** Measures the EMA weights at `step` (`paramSpecs()` order); undefined (and a log line) when the
 *  measurement fails. */
export async function measureQuality(
  deps: Deps,
  probe: QualityProbe,
  input: Pick<TrainShardInput, 'runId' | 'stage'>,
  step: number,
  ema: Float32Array[],
): Promise<QualityPoint | undefined> {
  const base = { [ATTR.runId]: input.runId, [ATTR.stage]: input.stage, [ATTR.step]: step };
  try {
    return await withSpan(QUALITY_SPAN, base, (span) => {
      const q = probe.measure(step, () => ema);
      span.setAttributes(record(input.runId, q));
      deps.log(`quality: ${qualityLine(q)} [${q.seconds} s]`);
      return q;
    });
  } catch (e) {
    deps.log(`quality measurement at ${input.stage} step ${step} failed`, { error: String(e) });
    return undefined;
  }
}
