// `dalle bench rerank`: the reranker (stage 3) trained in this process with the stage's own trainer and
// batches (activities/batches.ts `rerankBatches`, W = 1), and what it recognises: every `--every` steps, real
// held-out and seen shapes images classified among all 324 compositions' captions (eval/
// reranker-attributes.ts), with the seconds per step.
//
// `--model NAME` trains on a published model's spec and tokenizer (from `--store DIR` or JetStream at
// NATS_URL) instead of the preset's, and `--publish DIR` then writes that bundle again with this reranker in
// it (the spec's `rerank` block replaced by the model preset's, with `--set rerank.*` over it) as a new version in the folder model store DIR:
// a model trained without a rerank stage gets one without retraining the other two (`dalle eval --store DIR`).
import { parseSets, presets, PresetName, resolveSpec, type RunSpec } from '../config/index.ts';
import { openDataset, Tokenizer, trainTokenizer } from '../data/index.ts';
import { rerankBatches } from '../activities/batches.ts';
import { rankGradients } from '../activities/rank-gradients.ts';
import { formatRerankerAttributes, rerankerAttributes, type EvalReranker } from '../eval/index.ts';
import {
  createRerankTrainer,
  encodeState,
  initTfBackend,
  Reranker,
  rerankerDims,
  rerankerParamSpecs,
  type Trainer,
} from '../model/index.ts';
import { decodeBundle, encodeBundle, openModelStore, type ModelStore } from '../store/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';

export const cli = command({
  name: 'bench rerank',
  summary: 'train the reranker in this process and print what it recognises on real shapes images',
  options: {
    preset: { type: 'string', value: 'tiny|shapes', help: 'the preset (default shapes)' },
    set: {
      type: 'string',
      value: 'path=value',
      multiple: true,
      help: 'override one config field, e.g. rerank.lr=1e-3 (repeatable; JSON values parsed)',
    },
    every: { type: 'string', value: 'N', help: 'measure every N steps (default: at the end only)' },
    model: { type: 'string', value: 'NAME', help: "train on this published model's spec and tokenizer" },
    version: { type: 'string', value: 'V', help: 'the version of --model (default the latest)' },
    store: { type: 'string', value: 'DIR', help: 'the folder model store of --model (default: NATS_URL)' },
    publish: {
      type: 'string',
      value: 'DIR',
      help: 'publish --model with this reranker into folder store DIR',
    },
  },
});

interface Base {
  spec: RunSpec;
  tokenizer: Tokenizer;
  bundle?: Uint8Array;
}

/** The spec and tokenizer to train on: a published model's, or the preset's with a tokenizer trained here. */
async function base(o: {
  model?: string;
  version?: number;
  store?: string;
  preset: PresetName;
  overrides: object;
}): Promise<Base> {
  if (o.model === undefined) {
    const spec = resolveSpec({ ...o.overrides, preset: o.preset }, '--set');
    const tokenizer = await trainTokenizer(await openDataset(spec.dataset), spec.transformer.vocabSize);
    return { spec, tokenizer };
  }
  const { models, close } = await modelStore(o.store);
  try {
    const { bundle } = await models.load(o.model, o.version);
    const b = decodeBundle(bundle);
    // The current preset's reranker (the model may have been trained without one, or an older one).
    const preset = presets[b.spec.preset as PresetName] as { rerank?: object } | undefined;
    const rerank = { ...preset?.rerank, ...(o.overrides as { rerank?: object }).rerank };
    const spec = resolveSpec({ ...b.spec, rerank }, '--set');
    return { spec, tokenizer: Tokenizer.fromJSON(b.tokenizer), bundle };
  } finally {
    await close();
  }
}

async function modelStore(dir: string | undefined): Promise<{ models: ModelStore; close(): Promise<void> }> {
  if (dir) return { models: await openModelStore({ dir }), close: async () => {} };
  const { connectNats } = await import('../security/nats.ts');
  const nc = await connectNats({ name: 'dalle-bench-rerank' });
  return { models: await openModelStore({ nc }, { readOnly: true }), close: () => nc.drain() };
}

function evalReranker(trainer: Trainer<unknown>, b: Base): EvalReranker & { dispose(): void } {
  const { spec, tokenizer } = b;
  const model = Reranker.fromArrays(
    spec.rerank,
    rerankerDims(spec.rerank, spec.transformer, spec.dvae),
    trainer.exportParams('ema'),
  );
  const L = spec.transformer.textLen;
  return {
    resolution: spec.dvae.resolution,
    similarities(captions, rgb, n) {
      const text = new Int32Array(captions.length * L);
      captions.forEach((c, i) => text.set(tokenizer.encode(c, L).ids, i * L));
      return model.similarities(text, captions.length, rgb, n);
    },
    dispose: () => model.dispose(),
  };
}

function measure(trainer: Trainer<unknown>, b: Base, step: number, secondsPerStep: number): void {
  const t0 = performance.now();
  const rr = evalReranker(trainer, b);
  const r = rerankerAttributes(rr);
  rr.dispose();
  const pct = (x: number) => (100 * x).toFixed(1);
  const line = (a: typeof r.heldOut) =>
    `all ${pct(a.all)} colour ${pct(a.color)} shape ${pct(a.shape)} size ${pct(a.size)} position ${pct(a.position)}`;
  console.log(
    `step ${step}: held-out ${line(r.heldOut)} | seen ${line(r.seen)} | ${secondsPerStep.toFixed(3)} s/step (measured in ${((performance.now() - t0) / 1000).toFixed(1)} s)`,
  );
  if (step === b.spec.rerank.steps) console.log(`\n${formatRerankerAttributes(r)}\n`);
}

async function publish(dir: string, b: Base, trainer: Trainer<unknown>): Promise<void> {
  const old = decodeBundle(b.bundle!);
  const specs = rerankerParamSpecs(rerankerDims(b.spec.rerank, b.spec.transformer, b.spec.dvae));
  const arrays = trainer.exportParams('ema');
  const rerank = encodeState(
    { stage: 'rerank', step: b.spec.rerank.steps, runId: String(old.meta.runId ?? '') },
    specs.map((p, i) => [p.name, arrays[i]!] as const),
  );
  const meta = { ...old.meta, rerankSteps: b.spec.rerank.steps, rerankBy: 'dalle bench rerank' };
  const bundle = encodeBundle({ ...old, spec: b.spec, rerank, meta });
  const models = await openModelStore({ dir });
  const v = await models.publish(b.spec.modelName, bundle, { runId: old.meta.runId, preset: b.spec.preset });
  console.log(`published ${v.name} v${v.version} (${v.bytes} bytes) with the reranker into ${dir}`);
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  const shapesPresets = PresetName.options.filter(
    (p) => (presets[p].dataset as { kind: string }).kind === 'shapes',
  );
  const o = {
    preset: read.choice('preset', values.preset, shapesPresets) ?? 'shapes',
    overrides: parseSets(values.set ?? [], (m) => read.error(m)),
    model: values.model,
    version: read.int('version', values.version, 1),
    store: values.store,
  };
  if (values.publish !== undefined && o.model === undefined) throw read.error('--publish needs --model');
  const backend = await initTfBackend();
  const b = await base(o);
  const { spec } = b;
  if (spec.dataset.kind !== 'shapes') throw read.error(`--model ${o.model}: not a shapes model`);
  const steps = spec.rerank.steps;
  if (steps < 1) throw read.error('rerank.steps must be ≥ 1 (--set rerank.steps=N)');
  const every = read.int('every', values.every, 1) ?? steps;
  console.log(
    `backend ${backend}, rerank ${JSON.stringify(spec.rerank)}, batch ${spec.rerank.batchSize ?? spec.train.batchSize}`,
  );
  const source = rerankBatches(spec, await openDataset(spec.dataset), b.tokenizer);
  const trainer = createRerankTrainer(spec.rerank, spec.transformer, spec.dvae, spec.train.seed, 1);
  let trainMs = 0;
  for (let step = 0; step < steps; step++) {
    const t0 = performance.now();
    const g = await rankGradients(trainer, source, spec, step, 0, 1);
    trainer.applyGradients(g.grads, step, g.loss);
    trainMs += performance.now() - t0;
    if ((step + 1) % every === 0 || step + 1 === steps)
      measure(trainer, b, step + 1, trainMs / 1000 / (step + 1));
  }
  if (values.publish !== undefined) await publish(values.publish, b, trainer);
  trainer.dispose();
}
