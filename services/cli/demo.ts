// `dalle demo` (= `npm start`): the whole system on one machine. Services up, two worker processes, the
// `shapes` preset trained as a real trainDalle workflow (W = 2, PowerSGD on), one worker SIGKILLed mid-run
// to show the resume, the model published, the gRPC sampler started, Generate called for held-out prompts,
// the zero-shot evaluation run, and a report written to $DALLE_HOME/demo/. Stops what it started.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdirSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client, WorkflowHandle } from '@temporalio/client';
import { ConfigError, parseSets, resolveSpec, type RunSpec } from '../../config/index.ts';
import { HELD_OUT_COMPOSITIONS, TRAIN_COMPOSITIONS } from '../../data/shapes.ts';
import { check, down, serviceEnv, up, type ServiceEnv } from '../../infra/services.ts';
import { connectNats, redactUrl } from '../../security/nats.ts';
import { openStores, type ModelStore } from '../../store/index.ts';
import {
  TASK_QUEUE,
  WORKFLOW_TYPE,
  type PublishResult,
  type TrainDalleWorkflow,
} from '../../contract/index.ts';
import { createSamplerClient, generate } from '../sampler/index.ts';
import { command, parseCommand, readers } from './args.ts';
import { commands } from './commands.ts';
import {
  bundleDvae,
  evalCaption,
  evaluateShapes,
  formatEvalTable,
  grpcGenerator,
  type CurvePoint,
  type EvalReport,
} from '../../eval/index.ts';
import { temporalClient } from './temporal.ts';
import { demoCurves } from './demo-curves.ts';
import { labelledGridPng } from './demo-render.ts';
import { startConsoleChild, untilInterrupted } from './demo-console.ts';
import { DemoProcesses, workerThreads } from './demo-processes.ts';
import { writeDemoReport } from './demo-report.ts';
import { watchTraining } from './demo-watch.ts';
import { packageFile } from '../../config/package-root.ts';

const NATIVE_INSTALLER = packageFile('infra/native/install-tfjs-node.sh');
/** Minutes the shapes preset's step counts take end to end on this 2-core machine, quiet: 38.9 on
 *  2026-12-03 16:27 (dVAE 2,000 steps 6.0 min, transformer 5,000 steps 22.8, reranker 2,000 steps 4.1, then
 *  sampling and the evaluation of 216 prompts per group; W = 2 workers with one native thread each). With two
 *  threads per worker and the kernels of before, the same steps took about 52. */
export const BASE_MINUTES = 39;

/** The shapes preset, with `overrides` (`--set`) over it, and every stage's step counts (and the schedules tied
 *  to them) scaled to a time budget. Overrides of step counts are scaled too: the budget is relative to the
 *  preset's minutes. */
export function demoSpec(minutes: number, overrides: Record<string, unknown> = {}): RunSpec {
  if ('preset' in overrides)
    throw new ConfigError('--set', [{ path: 'preset', message: 'the demo trains the shapes preset' }]);
  const base = resolveSpec({ ...overrides, preset: 'shapes' }, '--set');
  const k = minutes / BASE_MINUTES;
  const steps = (n: number) => Math.max(base.train.checkpointEvery * 2, Math.round((n * k) / 10) * 10);
  const scale = (n: number) => Math.max(1, Math.round(n * k));
  return resolveSpec({
    ...base,
    dvae: {
      ...base.dvae,
      steps: steps(base.dvae.steps),
      lrDecaySteps: scale(base.dvae.lrDecaySteps),
      betaWarmupSteps: scale(base.dvae.betaWarmupSteps),
      tauDecaySteps: scale(base.dvae.tauDecaySteps),
    },
    transformer: {
      ...base.transformer,
      steps: steps(base.transformer.steps),
      warmupSteps: scale(base.transformer.warmupSteps),
      plateauPatience: scale(base.transformer.plateauPatience),
      // A --set cool-down keeps its share of the stage (absent stays absent: the spec's hash is unchanged).
      ...(base.transformer.cooldownSteps ? { cooldownSteps: scale(base.transformer.cooldownSteps) } : {}),
    },
    // Scaled like the others, so that a short budget is not spent on a full reranker; 0 (none) stays 0.
    rerank:
      base.rerank.steps > 0
        ? { ...base.rerank, steps: steps(base.rerank.steps), warmupSteps: scale(base.rerank.warmupSteps) }
        : base.rerank,
  });
}

export const cli = command({
  name: 'demo',
  summary: commands.demo.summary,
  options: {
    minutes: {
      type: 'string',
      value: 'N',
      help: `training budget; scales the step counts (default ${BASE_MINUTES})`,
    },
    'no-kill': { type: 'boolean', help: 'do not SIGKILL a worker mid-run' },
    'no-native': { type: 'boolean', help: 'skip installing the native TensorFlow backend (train on wasm)' },
    'no-console': {
      type: 'boolean',
      help: 'do not start the web console (by default it stays up until Ctrl-C)',
    },
    'eval-n': { type: 'string', value: 'N', help: 'prompts per evaluation group (default 54)' },
    threads: {
      type: 'string',
      value: 'N',
      help: "native threads per worker (dalle worker --threads; default: this host's cores shared among the workers)",
    },
    set: {
      type: 'string',
      value: 'path=value',
      multiple: true,
      help: 'override one field of the shapes preset, e.g. transformer.captionDropout=0.1 (repeatable)',
    },
  },
  notes: ['Writes $DALLE_HOME/demo/: grid.png, loss.svg, report.md, report.json and every process log.'],
});

interface DemoOptions {
  minutes: number;
  evalN: number;
  kill: boolean;
  native: boolean;
  console: boolean;
  threads?: number;
  /** The `--set` flags as given, and the overrides object they make. */
  sets: string[];
  overrides: Record<string, unknown>;
}

function demoOptions(argv: string[]): DemoOptions {
  const { values } = parseCommand(argv, cli);
  const read = readers(cli);
  return {
    minutes:
      read.num('minutes', values.minutes, (m) => m > 0 && m <= 24 * 60, 'a number of minutes in (0, 1440]') ??
      BASE_MINUTES,
    evalN: read.int('eval-n', values['eval-n'], 1) ?? 54,
    kill: !values['no-kill'],
    native: !values['no-native'],
    console: !values['no-console'],
    threads: read.int('threads', values.threads, 1),
    sets: values.set ?? [],
    overrides: parseSets(values.set ?? [], (m) => read.error(m)),
  };
}

/** What every step of the demo shares. */
interface Demo {
  /** When the demo started (ms since the epoch). */
  t0: number;
  /** Prints a line stamped with the seconds since t0. */
  say: (line: string) => void;
  env: ServiceEnv;
  /** $DALLE_HOME/demo: logs, samples and the report. */
  outDir: string;
  spec: RunSpec;
  runId: string;
}

function newDemo(minutes: number, overrides: Record<string, unknown>): Demo {
  const spec = demoSpec(minutes, overrides); // a bad --set fails here, before anything is written
  const t0 = Date.now();
  const say = (s: string) => console.log(`[demo ${((Date.now() - t0) / 1000).toFixed(0).padStart(4)}s] ${s}`);
  const env = serviceEnv();
  const outDir = join(env.home, 'demo');
  mkdirSync(join(outDir, 'samples'), { recursive: true });
  const runId = `demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
  return { t0, say, env, outDir, spec, runId };
}

/** The steps, in order: backend, services, workers (and console), train, sample, evaluate, report. */
export async function run(argv: string[]): Promise<number> {
  const opts = demoOptions(argv);
  const demo = newDemo(opts.minutes, opts.overrides);
  const { say, env, outDir, spec } = demo;
  const backend = chooseBackend(demo, opts.native);
  const weStarted = await startServices(demo);
  const processes = new DemoProcesses(outDir, say, opts.threads ?? workerThreads(spec.train.worldSize));
  const { client, close: closeTemporal } = await temporalClient();
  const nc = await connectNats({ name: 'dalle-demo' });
  const { checkpoints, models } = await openStores({ nc });
  try {
    for (let i = 0; i < spec.train.worldSize; i++) processes.startWorker(i);
    const web = opts.console ? await startConsole(demo, processes) : undefined;
    const handle = await startRun(demo, client);
    const offInterrupt = endRunOnInterrupt(demo, handle, processes, weStarted);
    const training = await watchTraining({
      client,
      checkpoints,
      handle,
      runId: demo.runId,
      spec,
      processes,
      killWorker: opts.kill,
      say,
    });
    const address = process.env.DALLE_SAMPLER_ADDRESS || '127.0.0.1:50051';
    processes.startSampler(address);
    const samples = await sampleGrid(demo, address);
    const { evaluation, table, curves } = await evaluateModel(
      demo,
      models,
      training.result.model,
      address,
      opts.evalN,
    );
    writeDemoReport(outDir, {
      runId: demo.runId,
      t0: demo.t0,
      minutes: opts.minutes,
      sets: opts.sets,
      backend,
      spec,
      training,
      samples,
      evaluation,
      table,
      curves,
    });
    const written = ['grid.png', 'quality.svg', 'loss.svg', 'report.md', 'report.json'];
    say(`wrote ${written.map((f) => join(outDir, f)).join(', ')}`);
    say(
      `held-out (zero-shot) accuracy, all four attributes: ${(evaluation.heldOut.accuracy.all * 100).toFixed(1)} % (random tokens ${(evaluation.random.accuracy.all * 100).toFixed(1)} %)`,
    );
    if (web && 'url' in web) {
      offInterrupt();
      say(`>>> the web console stays up with the sampler: ${web.url} (Ctrl-C to stop everything)`);
      await untilInterrupted();
    }
    return 0;
  } finally {
    await processes.stopAll();
    await nc.close().catch(() => undefined);
    await closeTemporal();
    if (weStarted) {
      await down(env);
      say('stopped the services this demo started');
    }
    say(`done in ${((Date.now() - demo.t0) / 60_000).toFixed(1)} min; files in ${outDir}`);
  }
}

/** The native TensorFlow backend (about 20× wasm here) when it can be built from the registries; optional:
 *  a failure leaves the workers on wasm. `npm install` prunes it, so it is (re)linked here. A backend
 *  forced by DALLE_BACKEND is left as it is. */
function chooseBackend({ outDir, say }: Demo, native: boolean): string {
  if (!native || process.env.DALLE_BACKEND) return process.env.DALLE_BACKEND || 'wasm';
  const logFile = join(outDir, 'native-install.log');
  say(
    `installing the optional native TensorFlow backend (infra/native/install-tfjs-node.sh), log ${logFile}`,
  );
  const fd = openSync(logFile, 'a');
  const r = spawnSync('bash', [NATIVE_INSTALLER, '--variant', 'cpu'], {
    stdio: ['ignore', fd, fd],
    timeout: 15 * 60_000,
  });
  closeSync(fd);
  say(
    r.status === 0
      ? 'native backend ready: workers train on tfjs-node'
      : `native backend unavailable (exit ${r.status ?? r.signal}); workers train on wasm`,
  );
  return r.status === 0 ? 'tensorflow' : 'wasm';
}

/** Starts the services that are not running; true when it started any (so the demo stops only those). */
async function startServices({ env, say }: Demo): Promise<boolean> {
  const before = await check(env);
  say(`services: Temporal ${env.temporalAddress}, NATS ${redactUrl(env.natsUrl)}, state ${env.home}`);
  await up(env);
  return before.filter((s) => !s.healthy).length > 0;
}

async function startConsole({ outDir, say }: Demo, processes: DemoProcesses) {
  const web = await startConsoleChild(join(outDir, 'console.log'));
  if ('child' in web) processes.adopt(web.child);
  say('url' in web ? `>>> web console: ${web.url}` : `web console not started: ${web.error}`);
  return web;
}

/** The run: a real trainDalle workflow. */
async function startRun({ runId, spec, say }: Demo, client: Client) {
  const handle = await client.workflow.start<TrainDalleWorkflow>(WORKFLOW_TYPE.trainDalle, {
    taskQueue: TASK_QUEUE,
    workflowId: runId,
    args: [{ runId, spec }],
  });
  say(
    `run ${runId}: dVAE ${spec.dvae.steps} steps, then transformer ${spec.transformer.steps} steps, then reranker ${spec.rerank.steps} steps, W=${spec.train.worldSize}, PowerSGD rank ${spec.powersgd.rank}, batch ${spec.train.batchSize}, checkpoint every ${spec.train.checkpointEvery}`,
  );
  return handle;
}

/** Ctrl-C ends the run too: a workflow left running would keep scheduling ranks onto the next demo's
 *  workers. Returns what takes the handlers off again. */
function endRunOnInterrupt(
  { env, say }: Demo,
  handle: WorkflowHandle<TrainDalleWorkflow>,
  processes: DemoProcesses,
  weStarted: boolean,
): () => void {
  const interrupted = async () => {
    say('interrupted: terminating the run and stopping what the demo started');
    await handle.terminate('dalle demo interrupted').catch(() => undefined);
    await processes.stopAll();
    if (weStarted) await down(env);
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  process.once('SIGTERM', interrupted);
  return () => {
    process.off('SIGINT', interrupted);
    process.off('SIGTERM', interrupted);
  };
}

/** Generate over gRPC for the held-out (zero-shot) prompts and two seen ones: samples/ and grid.png.
 *  Returns the prompts in row order. */
async function sampleGrid({ outDir, say }: Demo, address: string): Promise<string[]> {
  const grpcClient = createSamplerClient(address);
  const prompts = [
    ...HELD_OUT_COMPOSITIONS.filter((c) => c.size === 'large' && c.position === 'center'),
    ...TRAIN_COMPOSITIONS.filter((c) => c.size === 'large' && c.position === 'center').slice(0, 2),
  ].map((c) => evalCaption(c, 0));
  const rows: { prompt: string; pngs: Uint8Array[] }[] = [];
  for (const prompt of prompts) {
    const r = await untilSamplerReady(() =>
      generate(
        grpcClient,
        { prompt, numImages: 4, seed: 7n },
        { deadline: Date.now() + 300_000, keepProgress: false },
      ),
    );
    const pngs = [...r.images].sort((a, b) => a.index - b.index).map((i) => i.png);
    pngs.forEach((png, i) => writeFileSync(join(outDir, 'samples', `${rows.length}-${i}.png`), png));
    rows.push({ prompt, pngs });
    say(
      `Generate "${prompt}": ${pngs.length} images, first after ${r.firstImageMs?.toFixed(0)} ms (model ${r.done.model?.name} v${r.done.model?.version})`,
    );
  }
  grpcClient.close();
  writeFileSync(join(outDir, 'grid.png'), await labelledGridPng(rows));
  return prompts;
}

/** Retries `call` once a second (about a minute): the sampler is still loading the model. */
async function untilSamplerReady<T>(call: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call();
    } catch (e) {
      if (attempt > 60) throw e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** Attributes judged from pixels, seen vs held-out vs random tokens, then the sampling-settings curve. */
async function evaluateModel(
  { spec, say }: Demo,
  models: ModelStore,
  model: PublishResult,
  address: string,
  evalN: number,
): Promise<{ evaluation: EvalReport; table: string; curves: CurvePoint[] | null }> {
  say(
    `evaluating ${evalN} prompts per group over gRPC (seen, held-out, random-token baseline) and dVAE reconstructions`,
  );
  const { bundle } = await models.load(model.name, model.version);
  const dvae = await bundleDvae(bundle);
  const gen = await grpcGenerator(address, { concurrency: 4 });
  let evaluation;
  try {
    evaluation = await evaluateShapes({
      generate: gen.generate,
      dvae,
      n: evalN,
      seed: 0,
      log: (l) => say(`  ${l}`),
    });
  } finally {
    gen.close();
    dvae.dispose();
  }
  const table = formatEvalTable(evaluation);
  console.log(table);
  // Every held-out composition once per setting (fewer when --eval-n asks for fewer).
  const curves = await demoCurves({
    address,
    spec,
    n: Math.min(evalN, HELD_OUT_COMPOSITIONS.length),
    log: (l) => say(`  ${l}`),
  });
  return { evaluation, table, curves };
}
