// infra: the serverless-style scaling overlay (infra/k8s/autoscale) checked with the schema models of the
// `kubernetes-models` and `@kubernetes-models/keda` packages: every value against the published schemas
// (types, required fields, enums), every key against the packages' type declarations (their schemas let
// unknown keys through; a misspelt key is exactly the mistake a cluster would ignore silently), and the
// thresholds and names against the code they scale. No cluster here: what is checked is the files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';
import { ScaledJob } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledJob';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { TASK_QUEUE } from '../contract/index.ts';
import { METRIC_NAMES } from '../telemetry/metrics.ts';
import { defaultSchedulerOptions } from '../services/sampler/scheduler.ts';
import { parseCommand } from '../services/cli/args.ts';
import { cli as workerCli } from '../services/cli/worker.ts';
import { resolveSpec } from '../config/index.ts';

type Obj = Record<string, any>;
const root = fileURLToPath(new URL('..', import.meta.url));
const dir = join(root, 'infra/k8s/autoscale');

function docs(path: string): Obj[] {
  const all = parseAllDocuments(readFileSync(path, 'utf8'), { uniqueKeys: true });
  for (const d of all)
    assert.deepEqual(d.errors, [], `${path}: ${d.errors.map((e) => e.message).join('; ')}`);
  return all.map((d) => d.toJS() as Obj).filter(Boolean);
}
const overlay = new Map(
  readdirSync(dir)
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => [f, docs(join(dir, f))] as const),
);
const one = (file: string) => overlay.get(file)![0]!;
const base = (file: string) => docs(join(root, 'infra/k8s', file))[0]!;

/** Keys of `value` that the exported interface `name` of the declaration file `dts` does not declare,
 *  walking nested objects and arrays; maps (index signatures: labels, trigger metadata) are free-form. */
function unknownKeys(value: unknown, dts: string, name: string): string[] {
  const program = ts.createProgram([dts], { noEmit: true, skipLibCheck: true, strict: true });
  const checker = program.getTypeChecker();
  const module = checker.getSymbolAtLocation(program.getSourceFile(dts)!)!;
  const decl = checker.getExportsOfModule(module).find((s) => s.name === name);
  assert.ok(decl, `${dts} exports ${name}`);
  const out: string[] = [];
  const walk = (v: unknown, type: ts.Type, path: string): void => {
    if (v === null || typeof v !== 'object') return;
    let t = checker.getNonNullableType(type);
    if (t.isUnion()) {
      const objects = t.types.filter((m) => m.flags & ts.TypeFlags.Object);
      if (objects.length !== 1) return;
      t = objects[0]!;
    }
    if (Array.isArray(v)) {
      const el = checker.isArrayType(t) ? checker.getTypeArguments(t as ts.TypeReference)[0] : undefined;
      if (el) v.forEach((x, i) => walk(x, el, `${path}[${i}]`));
      return;
    }
    const props = checker.getPropertiesOfType(t);
    if (!props.length || checker.getIndexInfosOfType(t).length) return;
    for (const [k, x] of Object.entries(v)) {
      const p = props.find((s) => s.name === k);
      if (p) walk(x, checker.getTypeOfSymbol(p), `${path}.${k}`);
      else out.push(`${path}.${k}`);
    }
  };
  walk(value, checker.getDeclaredTypeOfSymbol(decl), name);
  return out;
}
const dtsOf = (module: string) => fileURLToPath(import.meta.resolve(module)).replace(/\.m?js$/, '.d.ts');
const SCALED_JOB_DTS = dtsOf('@kubernetes-models/keda/keda.sh/v1alpha1/ScaledJob');
const HPA_DTS = dtsOf('kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler');

test('infra: the autoscale overlay lists every file, builds on the base and replaces its worker Deployment', () => {
  const k = one('kustomization.yaml');
  assert.ok(k.resources.includes('../'), 'builds on infra/k8s');
  const listed = [
    ...k.resources.filter((r: string) => r !== '../'),
    ...k.patches.map((p: Obj) => p.path),
  ].sort();
  assert.deepEqual(listed, [...overlay.keys()].filter((f) => f !== 'kustomization.yaml').sort());
  const del = one('no-worker-deployment.yaml');
  assert.equal(del.$patch, 'delete');
  const worker = base('worker-deployment.yaml');
  assert.deepEqual([del.kind, del.metadata.name], [worker.kind, worker.metadata.name]);
});

test('infra: the worker ScaledJob and the sampler HPA pass the published schemas, key by key', () => {
  const job = one('worker-scaledjob.yaml');
  const hpa = one('sampler-hpa.yaml');
  new ScaledJob(job as never).validate();
  new HorizontalPodAutoscaler(hpa as never).validate();
  new ConfigMap(one('prometheus-adapter-rules.yaml') as never).validate();
  assert.deepEqual(unknownKeys(job, SCALED_JOB_DTS, 'IScaledJob'), []);
  assert.deepEqual(unknownKeys(hpa, HPA_DTS, 'IHorizontalPodAutoscaler'), []);

  // The checker is not a rubber stamp: a misspelt key, a number where the trigger wants a string and a
  // missing required field fail.
  const typo = structuredClone(job);
  typo.spec.maxReplicasCount = typo.spec.maxReplicaCount;
  assert.deepEqual(unknownKeys(typo, SCALED_JOB_DTS, 'IScaledJob'), ['IScaledJob.spec.maxReplicasCount']);
  const badType = structuredClone(job);
  badType.spec.triggers[0].metadata.targetQueueSize = 1;
  assert.throws(() => new ScaledJob(badType as never).validate(), /targetQueueSize|string/);
  const badHpa = structuredClone(hpa);
  delete badHpa.spec.scaleTargetRef.name;
  assert.throws(() => new HorizontalPodAutoscaler(badHpa as never).validate(), /required property name/);
});

test('infra: the worker scaler watches the task queue the workers poll, one worker per waiting task', () => {
  const job = one('worker-scaledjob.yaml');
  const cm = base('configmap.yaml').data as Obj;
  const trigger = job.spec.triggers[0].metadata as Obj;
  assert.equal(job.spec.triggers[0].type, 'temporal');
  assert.equal(trigger.taskQueue, TASK_QUEUE);
  assert.equal(trigger.endpoint, cm.TEMPORAL_ADDRESS);
  assert.equal(trigger.namespace, cm.TEMPORAL_NAMESPACE);
  const c = job.spec.jobTargetRef.template.spec.containers[0];
  const kust = base('kustomization.yaml');
  assert.equal(c.image, `${kust.images[0].name}:${kust.images[0].newTag}`, 'the image the base deploys');
  const args = (c.args as string[]).map((a) => a.replace(/\$\(([A-Z_]+)\)/g, 'k8s-node'));
  assert.equal(args[0], 'worker');
  const { values } = parseCommand(args.slice(1), workerCli); // what `dalle worker` accepts
  assert.equal(values['task-queue'], TASK_QUEUE);
  assert.equal(trigger.targetQueueSize, values.slots, 'one worker per waiting task: one rank slot each');
  // An idle worker must outlive the pauses of a run that still needs it: the relaunch backoff after a
  // failure (at most 15 s) and the gap between segments, and several KEDA polls.
  const idle = Number(values['exit-when-idle']);
  assert.ok(idle >= 10 * job.spec.pollingInterval && idle > 15, `--exit-when-idle ${idle}`);
  // A rank that waits in the backlog joins its peers only if a worker comes within joinTimeout.
  assert.ok(resolveSpec({ preset: 'shapes' }).train.joinTimeout >= 6 * job.spec.pollingInterval);
  assert.equal(job.spec.jobTargetRef.backoffLimit, 0, 'the workflow, not the Job, retries a lost rank');
  assert.equal(job.spec.jobTargetRef.template.spec.restartPolicy, 'Never');
});

test('infra: the sampler scales on the in-flight requests its telemetry exports, below its concurrency', () => {
  const hpa = one('sampler-hpa.yaml');
  const sampler = base('sampler-deployment.yaml');
  assert.deepEqual(
    [hpa.spec.scaleTargetRef.kind, hpa.spec.scaleTargetRef.name],
    [sampler.kind, sampler.metadata.name],
  );
  const metric = hpa.spec.metrics[0].pods;
  assert.equal(metric.metric.name, METRIC_NAMES.inFlight.replace(/\./g, '_'));
  const target = Number(metric.target.averageValue);
  const args = sampler.spec.template.spec.containers[0].args as string[];
  assert.ok(!args.includes('--max-concurrent'), 'the sampler runs with the default concurrency');
  assert.ok(target < defaultSchedulerOptions.maxConcurrent, 'scale out before requests queue');
  assert.ok(target >= defaultSchedulerOptions.maxConcurrent / 2, 'and not while a replica is half idle');
  const grace = Number(args[args.indexOf('--grace') + 1]);
  assert.ok(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds >= 5 * grace);

  // prometheus-adapter maps the series to pods by the resource attributes the sampler sets.
  const rules = docs(join(dir, 'prometheus-adapter-rules.yaml'))[0]!.data['config.yaml'] as string;
  const rule = (parseAllDocuments(rules)[0]!.toJS() as Obj).rules[0];
  assert.match(rule.seriesQuery, new RegExp(METRIC_NAMES.inFlight.replace(/\./g, '_')));
  assert.equal(rule.name.as, '$1');
  assert.ok(new RegExp(rule.name.matches).test(`${metric.metric.name}_ratio`));
  const attrs = sampler.spec.template.spec.containers[0].env.find(
    (e: Obj) => e.name === 'OTEL_RESOURCE_ATTRIBUTES',
  );
  for (const [label, attribute] of [
    ['k8s_pod_name', 'k8s.pod.name'],
    ['k8s_namespace_name', 'k8s.namespace.name'],
  ]) {
    assert.ok(rule.resources.overrides[label!], label);
    assert.match(attrs.value, new RegExp(`${attribute!.replace(/\./g, '\\.')}=`));
  }
  assert.match(rule.metricsQuery, /rpc_method=~"\.\*Generate"/, "the telemetry's rpc.method attribute");
});
