// telemetry: the end-to-end check with the real processes, as a user runs them with
// OTEL_EXPORTER_OTLP_ENDPOINT set: two `dalle worker`s, `dalle train` (tiny, W = 2), `dalle sampler` serving
// the model the run published, one `dalle generate`, all exporting to an OTLP/HTTP receiver on loopback.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { METRIC_NAMES } from '../telemetry/index.ts';
import { CLI, startWorker, writeSpec, type WorkerProc } from './fixtures/cluster.ts';
import { OtlpReceiver, type ReceivedSpan } from './fixtures/otlp-receiver.ts';

interface Proc {
  proc: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
}

function dalleProc(args: string[], env: Record<string, string>): Proc {
  const proc = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  return { proc, out: () => out, exited: new Promise((resolve) => proc.on('exit', (code) => resolve(code))) };
}

async function until<T>(what: string, fn: () => T | undefined | false, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test(
  'telemetry: one trace from dalle train through both workflows, both ranks and their all-reduces; Generate traced; metrics arrive',
  { timeout: 12 * 60_000 },
  async (t) => {
    const rx = await OtlpReceiver.start();
    const env = { ...rx.env('http/protobuf', 1000) };
    const tag = `${process.pid}-${Date.now()}`;
    const runId = `tel-e2e-${tag}`;
    const modelName = `tel-e2e-${process.pid}`;
    const specFile = writeSpec({ preset: 'tiny', modelName });
    const outDir = mkdtempSync(join(tmpdir(), 'tel-e2e-'));
    const workers: WorkerProc[] = [startWorker(env, 'w0'), startWorker(env, 'w1')];
    let sampler: Proc | undefined;
    try {
      // 1. Train: the CLI waits for the run to finish.
      const train = dalleProc(['train', '--config', specFile, '--run-id', runId], env);
      const trainCode = await train.exited;
      assert.equal(trainCode, 0, train.out());

      // The run's quality as `dalle status --json` shows it (a query: answered while the workers run).
      const status = dalleProc(['status', runId, '--json'], env);
      assert.equal(await status.exited, 0, status.out());
      const st = JSON.parse(status.out().slice(status.out().indexOf('{'))) as {
        quality: Record<'dvae' | 'transformer', { step: number } | null>;
        progress: { quality: unknown[] };
      };
      assert.equal(st.quality.dvae?.step, 20, 'status --json: the dVAE quality of the last checkpoint');
      assert.equal(st.quality.transformer?.step, 20);
      assert.equal(st.progress.quality.length, 8, 'every checkpoint of both stages');

      // 2. Serve the model this run published and generate once.
      sampler = dalleProc(['sampler', '--model', modelName, '--port', '0'], env);
      const port = await until(
        'the sampler to serve',
        () =>
          /"model serving"/.test(sampler!.out()) &&
          /listening on 127\.0\.0\.1:(\d+)/.exec(sampler!.out())?.[1],
        120_000,
      );
      const gen = dalleProc(
        [
          'generate',
          'a red circle',
          '-n',
          '1',
          '--seed',
          '3',
          '--server',
          `127.0.0.1:${port}`,
          '--out',
          outDir,
          '--json',
        ],
        env,
      );
      assert.equal(await gen.exited, 0, gen.out());

      // 3. Graceful stops flush every process's last spans and metrics.
      sampler.proc.kill('SIGTERM');
      assert.equal(await sampler.exited, 0, sampler.out());
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      assert.deepEqual(rx.rejected, []);

      // 4. One trace: CLI span → StartWorkflow → RunWorkflow:trainDalle → StartChildWorkflow:trainStage →
      //    RunWorkflow:trainStage → StartActivity:trainShard → RunActivity:trainShard → collective.allReduce.
      const root = await rx.waitFor('the dalle train span', () =>
        rx.spans.find((s) => s.name === 'dalle train' && s.attributes['dalle.run_id'] === runId),
      );
      assert.equal(root.service, 'dalle-cli');
      assert.equal(root.parentSpanId, undefined);
      const inTrace = rx.spans.filter((s) => s.traceId === root.traceId);
      const byId = new Map(inTrace.map((s) => [s.spanId, s]));
      const parentOf = (s: ReceivedSpan) => (s.parentSpanId ? byId.get(s.parentSpanId) : undefined);
      /** The chain of span names from `s` up to the root. */
      const chain = (s: ReceivedSpan): string[] => {
        const names = [s.name];
        for (let p = parentOf(s); p; p = parentOf(p)) names.push(p.name);
        return names;
      };
      const named = (n: string) => inTrace.filter((s) => s.name === n);
      t.diagnostic(`${inTrace.length} spans in the run's trace; ${rx.summary()}`);

      const [start] = named('StartWorkflow:trainDalle');
      assert.ok(
        start && start.service === 'dalle-cli' && start.parentSpanId === root.spanId,
        "StartWorkflow:trainDalle is the CLI span's child",
      );
      const [runDalle] = named('RunWorkflow:trainDalle');
      assert.ok(
        runDalle && runDalle.service === 'dalle-worker' && runDalle.parentSpanId === start.spanId,
        'RunWorkflow:trainDalle continues it in a worker',
      );
      // trainDalle continues as new between its phases: each stage starts from one of its runs.
      const dalleRuns = new Set(named('RunWorkflow:trainDalle').map((r) => r.spanId));
      const stageStarts = named('StartChildWorkflow:trainStage');
      assert.equal(stageStarts.length, 3, 'one trainStage per stage (tiny: dvae, transformer, rerank)');
      for (const s of stageStarts) assert.ok(dalleRuns.has(s.parentSpanId ?? ''), chain(s).join(' ← '));
      const stageRuns = named('RunWorkflow:trainStage');
      assert.ok(stageRuns.length >= 2);
      for (const s of stageRuns)
        assert.ok(
          ['StartChildWorkflow:trainStage', 'ContinueAsNew:trainStage'].includes(parentOf(s)?.name ?? ''),
          chain(s).join(' ← '),
        );

      const runActs = named('RunActivity:trainShard');
      // tiny: 20 steps per stage in segments of 10, W = 2 → 2 segments × 2 ranks × 2 stages.
      assert.ok(runActs.length >= 8, `${runActs.length} trainShard activities`);
      for (const a of runActs) {
        assert.deepEqual(
          chain(a).slice(1, 4),
          ['StartActivity:trainShard', 'RunWorkflow:trainStage', 'StartChildWorkflow:trainStage'],
          chain(a).join(' ← '),
        );
        assert.equal(a.service, 'dalle-worker');
      }
      const instances = new Set(runActs.map((a) => a.resource['service.instance.id']));
      assert.equal(instances.size, 2, 'the ranks ran in both worker processes');

      const allReduces = named('collective.allReduce');
      for (const stage of ['dvae', 'transformer']) {
        for (const rank of [0, 1]) {
          const mine = allReduces.filter(
            (s) =>
              s.attributes['dalle.rank'] === rank &&
              chain(s).includes('RunActivity:trainShard') &&
              stageOf(s) === stage,
          );
          assert.ok(mine.length >= 20, `${stage} rank ${rank}: ${mine.length} all-reduce spans`);
          for (const s of mine) {
            assert.equal(parentOf(s)?.name, 'RunActivity:trainShard');
            assert.equal(s.attributes['dalle.world_size'], 2);
            assert.equal(s.attributes['dalle.run_id'], runId);
            // Steps 0..19 of tiny's 20; the checkpoint barrier of step 20 runs after the last step.
            const step = Number(s.attributes['dalle.step']);
            assert.ok(step >= 0 && step <= 20, `all-reduce at step ${step}`);
            assert.ok(Number(s.attributes['dalle.allreduce.bytes_raw']) > 0);
            assert.ok(Number(s.attributes['dalle.allreduce.bytes_sent']) > 0);
            assert.ok(Number(s.attributes['dalle.allreduce.chunks']) >= 1);
          }
        }
      }
      function stageOf(s: ReceivedSpan): string | undefined {
        // The activity's workflow is `<runId>-<stage>…`-named by trainDalle; fall back to the rank's checkpoint spans.
        const act = chain(s).includes('RunActivity:trainShard') ? parentOf(s) : undefined;
        const wf = String(act?.attributes.temporalWorkflowId ?? '');
        return wf.includes('dvae') ? 'dvae' : wf.includes('transformer') ? 'transformer' : undefined;
      }
      const saves = named('checkpoint.save').filter((s) => parentOf(s)?.name === 'RunActivity:trainShard');
      assert.ok(saves.length >= 4, `${saves.length} checkpoint saves under trainShard`);
      for (const s of saves) {
        assert.match(String(s.attributes['dalle.checkpoint.sha256']), /^[0-9a-f]{64}$/);
        assert.ok(Number(s.attributes['dalle.checkpoint.bytes']) > 0);
      }

      // Quality at every committed checkpoint of each stage (tiny: every 5 of 20 steps), measured by rank 0
      // under its trainShard activity, with the figures as attributes.
      for (const stage of ['dvae', 'transformer']) {
        const q = named('quality.measure').filter((s) => s.attributes['dalle.stage'] === stage);
        assert.deepEqual(
          q.map((s) => Number(s.attributes['dalle.step'])).sort((a, b) => a - b),
          [5, 10, 15, 20],
          `${stage} quality spans`,
        );
        for (const s of q) {
          assert.equal(parentOf(s)?.name, 'RunActivity:trainShard');
          const a = s.attributes;
          if (stage === 'dvae') {
            assert.ok(Number(a['dalle.quality.codes_used']) >= 1, JSON.stringify(a));
            assert.ok(Number(a['dalle.quality.reconstruction_accuracy']) >= 0);
          } else {
            assert.ok(
              Number.isFinite(Number(a['dalle.quality.caption_information.heldOut'])),
              JSON.stringify(a),
            );
            assert.ok(Number(a['dalle.quality.sample_accuracy.seen']) >= 0);
          }
        }
      }

      // 5. Generate: the CLI's client span, the sampler's server span under it, both OK.
      const genClient = rx.spans.find(
        (s) => s.name === 'dalle.v1.Sampler/Generate' && s.service === 'dalle-cli' && s.kind === 3,
      );
      assert.ok(genClient, rx.summary());
      const genServer = rx.spans.find(
        (s) =>
          s.name === 'dalle.v1.Sampler/Generate' &&
          s.service === 'dalle-sampler' &&
          s.parentSpanId === genClient.spanId,
      );
      assert.ok(genServer, 'the server span continues the client span');
      for (const s of [genClient, genServer]) {
        assert.equal(s.attributes['rpc.grpc.status_code'], 0);
        assert.notEqual(s.status.code, 2);
      }
      assert.equal(genServer.attributes['dalle.generate.num_images'], 1);
      assert.equal(genServer.attributes['dalle.model.name'], modelName);
      assert.ok(Number(genServer.attributes['dalle.generate.text_tokens']) > 0);

      // 6. Metrics, with plausible values.
      const run = (p: { attributes: Record<string, unknown> }) => p.attributes['dalle.run_id'] === runId;
      for (const stage of ['dvae', 'transformer']) {
        const at = (p: { attributes: Record<string, unknown> }) =>
          run(p) && p.attributes['dalle.stage'] === stage;
        const loss = rx.latestPoint(METRIC_NAMES.loss, at)?.value;
        assert.ok(loss !== undefined && Number.isFinite(loss) && loss > 0, `${stage} loss ${loss}`);
        const sps = rx.latestPoint(METRIC_NAMES.stepsPerSecond, at)?.value;
        assert.ok(sps !== undefined && sps > 0 && sps < 1000, `${stage} steps/s ${sps}`);
        const rate = rx.latestPoint(METRIC_NAMES.compressionRate, at)?.value;
        assert.ok(
          rate !== undefined && rate > 1,
          `${stage} compression rate ${rate} (PowerSGD on from step 2)`,
        );
        assert.equal(
          rx.latestPoint(METRIC_NAMES.restarts, at)?.value,
          0,
          `${stage}: no restarts in a clean run`,
        );
      }
      const dv = (p: { attributes: Record<string, unknown> }) =>
        run(p) && p.attributes['dalle.stage'] === 'dvae';
      assert.ok((rx.latestPoint(METRIC_NAMES.codesUsed, dv)?.value ?? 0) >= 1, 'dVAE codes used');
      const info = rx.latestPoint(
        METRIC_NAMES.captionInformation,
        (p) => run(p) && p.attributes['dalle.quality.split'] === 'heldOut',
      )?.value;
      assert.ok(info !== undefined && Number.isFinite(info), `caption information ${info}`);
      // Cumulative series per worker process and (rank, tag): their final counts add up to one sample per
      // all-reduce, exactly the all-reduce spans of the run.
      const finalCount = new Map<string, number>();
      for (const p of rx.points.filter((q) => q.name === METRIC_NAMES.allReduceSeconds && run(q))) {
        const key = `${String(p.resource['service.instance.id'])} ${JSON.stringify(p.attributes)}`;
        finalCount.set(key, Math.max(finalCount.get(key) ?? 0, p.count ?? 0));
      }
      const arCount = [...finalCount.values()].reduce((a, b) => a + b, 0);
      assert.equal(
        arCount,
        allReduces.filter((s) => s.attributes['dalle.run_id'] === runId).length,
        'one histogram sample per all-reduce span',
      );
      const ck = rx.points.filter((p) => p.name === METRIC_NAMES.checkpointSeconds && run(p));
      assert.ok(ck.some((p) => p.attributes['dalle.checkpoint.op'] === 'save' && (p.count ?? 0) > 0));
      assert.ok(ck.some((p) => p.attributes['dalle.checkpoint.op'] === 'load' && (p.count ?? 0) > 0));
      const lat = rx.latestPoint(
        METRIC_NAMES.generateSeconds,
        (p) => p.service === 'dalle-sampler' && p.attributes['rpc.grpc.status_code'] === 0,
      );
      assert.ok(
        lat && lat.count === 1 && lat.sum! > 0 && lat.sum! < 600,
        `generate latency: count ${lat?.count}, sum ${lat?.sum} s`,
      );
      // Both gauges are read in the export that carried the latency sample, from the same process: the request
      // had left them by then. (That export is often the exit's final one, which must read the drained queue.)
      const sameExport = (p: { resource: Record<string, unknown>; timeNs: bigint }) =>
        p.resource['service.instance.id'] === lat.resource['service.instance.id'] && p.timeNs === lat.timeNs;
      assert.equal(rx.latestPoint(METRIC_NAMES.inFlight, sameExport)?.value, 0);
      assert.equal(rx.latestPoint(METRIC_NAMES.queueDepth, sameExport)?.value, 0);
    } catch (e) {
      const samplerMetrics: string[] = [
        METRIC_NAMES.inFlight,
        METRIC_NAMES.queueDepth,
        METRIC_NAMES.generateSeconds,
      ];
      for (const p of rx.points.filter(
        (q) => q.service === 'dalle-sampler' && samplerMetrics.includes(q.name),
      ))
        t.diagnostic(
          `${p.timeNs} ${p.name} ${JSON.stringify(p.attributes)} value ${p.value} count ${p.count}`,
        );
      for (const w of workers) t.diagnostic(w.output.slice(-30).join('\n'));
      if (sampler) t.diagnostic(sampler.out().slice(-3000));
      throw e;
    } finally {
      await Promise.all(workers.map((w) => w.kill('SIGKILL')));
      sampler?.proc.kill('SIGKILL');
      await rx.close();
      rmSync(outDir, { recursive: true, force: true });
    }
  },
);
