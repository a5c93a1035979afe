// `dalle bench code-usage [--model NAME] [--version V] [--store DIR] [--json]`
//
// Whether the codes held-out images need were ever training targets (eval/code-usage.ts): encodes a published
// shapes model's training set and the 108 held-out images with its dVAE and prints, per held-out composition,
// the share of foreground cells whose code never appeared on a training image's foreground, never with that
// colour, or never with that shape. Tells a codebook that cannot express a held-out pair from a transformer
// that does not compose it. It also prints how much of a training image's token grid its figure's ±1 px
// shift decides (shiftEntropy). Training images include the extra colours and kinds the dataset options add;
// multi-shape scenes are left out.
import { HELD_OUT_COMPOSITIONS, renderShape, shapeItem, ShapesDataset } from '../data/index.ts';
import { codeUsage, dvaeOfBundle, shiftEntropy, type EncodedShape } from '../eval/index.ts';
import { command, parseCommand, readers } from '../services/cli/args.ts';
import { cli as evalCli, openModels } from '../services/cli/eval.ts';

export const cli = command({
  name: 'bench code-usage',
  summary: 'whether the codes held-out images need were ever training targets, per colour and shape',
  options: {
    // The model is found as `dalle eval` finds it.
    model: evalCli.options.model,
    version: evalCli.options.version,
    store: evalCli.options.store,
    json: { type: 'boolean', help: 'print the figures as JSON' },
  },
});

export async function main(argv: string[]): Promise<void> {
  const { values } = parseCommand(argv, cli);
  const { models, closeNats } = await openModels(values.store);
  const { info, bundle } = await models
    .load(values.model ?? 'dalle', readers(cli).int('version', values.version, 1))
    .finally(closeNats);
  const { dvae, spec } = await dvaeOfBundle(bundle);
  if (spec.dataset.kind !== 'shapes') {
    dvae.dispose();
    throw readers(cli).error(`--model ${info.name} v${info.version} was not trained on the shapes set`);
  }
  const R = spec.dvae.resolution;
  const g = spec.dvae.grid;
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
  const ds = new ShapesDataset(spec.dataset, 'train');
  const trainItems = [];
  for (let i = 0; i < ds.size; i++) {
    const scene = ds.scene(i);
    if (scene.length === 1) trainItems.push({ composition: scene[0]!, rgb: (await ds.get(i)).rgb });
  }
  const datasetSeed = spec.dataset.seed ?? 1234;
  const held = HELD_OUT_COMPOSITIONS.map((_, i) => shapeItem(i, 'heldout', datasetSeed));
  const train = await encodeAll(trainItems);
  const shift = shiftEntropy(train);
  const usage = codeUsage(
    train,
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
        shiftEntropy: shift,
      }),
    );
    return;
  }
  const pct = (v: number) => `${(100 * v).toFixed(0)} %`;
  console.log(
    `code-usage: ${info.name} v${info.version}, ${trainItems.length} training images: ${usage.trainCodes} codes on foreground cells; codes used with 1…${usage.codesByColours.length} colours: ${usage.codesByColours.join(' / ')}`,
  );
  console.log(
    `code-usage: a cell's code leaves ${shift.perCellGivenComposition.toFixed(3)} nats open given the caption's composition, ${shift.perCellGivenShift.toFixed(3)} given also the figure's shift: ${(shift.perCellGivenComposition * g * g).toFixed(1)} nats over ${g * g} cells if predicted cell by cell, against ${shift.perImageShifts.toFixed(2)} for the whole image (the shifts seen per composition)`,
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
