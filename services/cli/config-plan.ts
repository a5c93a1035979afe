// `dalle config plan <preset|file> --hosts H --gpus-per-host G`: memory per GPU and bytes crossing hosts
// per step of a run laid out flat vs with parameters sharded within hosts (activities/layout-plan.ts),
// counted from the shapes alone, so paper-12b is laid out without allocating it.
import type { RunSpec } from '../../config/index.ts';

const GB = (b: number) => `${(b / 1e9).toFixed(2)} GB`;

export async function printPlan(spec: RunSpec, hosts: number, perHost: number, json: boolean): Promise<void> {
  const { planLayout } = await import('../../activities/layout-plan.ts');
  const { stageParamSpecs } = await import('../../activities/ema-params.ts');
  const stages = (['transformer', 'dvae'] as const).map((stage) => ({
    stage,
    ...planLayout(stageParamSpecs(stage, spec), spec.powersgd, hosts, perHost),
  }));
  if (json) {
    console.log(JSON.stringify({ preset: spec.preset, stages }, null, 2));
    return;
  }
  const [t, d] = stages;
  console.log(
    `${spec.preset} on ${hosts} hosts × ${perHost} GPUs (W = ${t!.worldSize}), PowerSGD rank ${spec.powersgd.rank} (⌈r/G⌉ = ${Math.ceil(spec.powersgd.rank / perHost)} per slice when sharded), wire ${spec.powersgd.wire}`,
  );
  console.log(`transformer: ${(t!.parameters / 1e9).toFixed(2)}B parameters; per GPU, fp32:`);
  const rows: [string, number, number][] = [
    ['parameters (full, gathered)', t!.flat.params, t!.sharded.params],
    ['gradients (full)', t!.flat.grads, t!.sharded.grads],
    ['AdamW m, v, EMA (+ master shard)', t!.flat.optimizer, t!.sharded.optimizer],
    ['PowerSGD error buffers + Q', t!.flat.powersgd, t!.sharded.powersgd],
    ['total (activations not counted)', t!.flat.total, t!.sharded.total],
    ['bytes leaving a host per step', t!.crossHostPerStep.flat, t!.crossHostPerStep.sharded],
  ];
  console.log(`  ${''.padEnd(34)} ${'flat'.padStart(12)} ${'sharded'.padStart(12)}`);
  for (const [k, a, b] of rows) console.log(`  ${k.padEnd(34)} ${GB(a).padStart(12)} ${GB(b).padStart(12)}`);
  const pct = (x: number) => `${(100 * x).toFixed(1)} %`;
  console.log(
    `  PowerSGD saves ${pct(t!.compression.flat)} (flat) / ${pct(t!.compression.sharded)} (sharded) of what would cross hosts in fp32`,
  );
  // What the per-step state would be if parameters and gradients lived as 16-bit shards gathered one
  // resblock at a time (the paper's prefetch), with the optimizer and PowerSGD state as above.
  const fp16Shard = (2 * t!.parameters) / perHost;
  console.log(
    `  sharded, if parameters lived as 16-bit shards (${GB(fp16Shard)}) gathered one resblock at a time (not done here): about ${GB(t!.sharded.optimizer + t!.sharded.powersgd + fp16Shard)} + resblock buffers + activations`,
  );
  console.log(
    `dvae: ${(d!.parameters / 1e6).toFixed(1)}M parameters; per GPU ${GB(d!.flat.total)} flat, ${GB(d!.sharded.total)} sharded`,
  );
}
