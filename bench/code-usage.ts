// `dalle bench code-usage [--model NAME] [--version V] [--store DIR] [--json]`
//
// Whether the codes held-out images need were ever training targets (eval/code-usage.ts): encodes a published
// shapes model's training set and the 108 held-out images with its dVAE and prints, per held-out composition,
// the share of foreground cells whose code never appeared on a training image's foreground, never with that
// colour, or never with that shape. Tells a codebook that cannot express a held-out pair from a transformer
// that does not compose it. Training images include the extra colours and kinds the dataset options add;
// multi-shape scenes are left out.
import { HELD_OUT_COMPOSITIONS, renderShape, shapeItem, ShapesDataset } from '../data/index.ts';
import { codeUsage, type EncodedShape } from '../eval/index.ts';
import { decodeState, Dvae, dvaeParamSpecs, initTfBackend } from '../model/index.ts';
import { connectNats } from '../security/nats.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { decodeBundle, openModelStore } from '../store/index.ts';

export const cli = command({
  name: 'bench code-usage',
  summary: 'whether the codes held-out images need were ever training targets, per colour and shape',
  options: {
    model: { type: 'string', value: 'NAME', help: "the published model (default 'dalle')" },
    version: { type: 'string', value: 'V', help: 'its version (default the latest)' },
    store: {
      type: 'string',
      value: 'DIR',
      help: 'load the model from a local store folder (default: JetStream at NATS_URL)',
    },
    json: { type: 'boolean', help: 'print the figures as JSON' },
  },
});

async function loadModel(values: { model?: string; version?: string; store?: string }) {
  const version = readers(cli).int('version', values.version, 1);
  if (values.store)
    return (await openModelStore({ dir: values.store })).load(values.model ?? 'dalle', version);
  const nc = await connectNats({ name: 'dalle-bench-code-usage' });
  try {
    return await (await openModelStore({ nc }, { readOnly: true })).load(values.model ?? 'dalle', version);
  } finally {
    await nc.drain();
  }
}

export async function main(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const { info, bundle } = await loadModel(values);
  await initTfBackend();
  const b = decodeBundle(bundle);
  if (b.spec.dataset.kind !== 'shapes')
    throw readers(cli).error(`--model ${info.name} v${info.version} was not trained on the shapes set`);
  const specs = dvaeParamSpecs(b.spec.dvae);
  const { arrays } = decodeState(b.dvae);
  const dvae = Dvae.fromParams(
    b.spec.dvae,
    specs.map((s) => arrays.get(s.name)!),
  );
  const R = b.spec.dvae.resolution;
  const g = b.spec.dvae.grid;
  const encodeAll = async (items: { composition: EncodedShape['composition']; rgb: Uint8Array }[]) => {
    const out: EncodedShape[] = [];
    for (let i = 0; i < items.length; i += 256) {
      const chunk = items.slice(i, i + 256);
      const rgb = new Uint8Array(chunk.length * R * R * 3);
      chunk.forEach((it, k) => rgb.set(it.rgb, k * R * R * 3));
      const tokens = await dvae.encode(rgb);
      chunk.forEach((it, k) => out.push({ ...it, tokens: tokens.slice(k * g * g, (k + 1) * g * g) }));
    }
    return out;
  };
  const ds = new ShapesDataset(b.spec.dataset, 'train');
  const trainItems = [];
  for (let i = 0; i < ds.size; i++) {
    const scene = ds.scene(i);
    if (scene.length === 1) trainItems.push({ composition: scene[0]!, rgb: (await ds.get(i)).rgb });
  }
  const datasetSeed = b.spec.dataset.seed ?? 1234;
  const held = HELD_OUT_COMPOSITIONS.map((_, i) => shapeItem(i, 'heldout', datasetSeed));
  const usage = codeUsage(
    await encodeAll(trainItems),
    await encodeAll(held.map((s) => ({ composition: s, rgb: renderShape(s, R) }))),
    R,
    g,
  );
  dvae.dispose();
  if (values.json) {
    console.log(
      JSON.stringify({
        model: { name: info.name, version: info.version },
        trainImages: trainItems.length,
        ...usage,
      }),
    );
    return;
  }
  const pct = (v: number) => `${(100 * v).toFixed(0)} %`;
  console.log(
    `code-usage: ${info.name} v${info.version}, ${trainItems.length} training images: ${usage.trainCodes} codes on foreground cells; codes used with 1…${usage.codesByColours.length} colours: ${usage.codesByColours.join(' / ')}`,
  );
  console.log(
    '| held-out | foreground cells | code never in training | never with this colour | with it, never this shape |',
  );
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const r of usage.heldOut)
    console.log(
      `| ${r.composition} | ${r.cells} | ${pct(r.unseen)} | ${pct(r.unseenWithColour)} | ${pct(r.unseenWithShape)} |`,
    );
}
