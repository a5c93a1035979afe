// The demo's view of its training run: polls the run's progress every second until the workflow ends,
// collecting the loss curve, the quality measured at checkpoints and each stage's wall time, and SIGKILLs
// one worker once, mid-dVAE, to show that the run resumes from its last committed checkpoint.
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { RunSpec } from '../../config/index.ts';
import type {
  QualityPoint,
  RunProgress,
  TrainDalleResult,
  TrainDalleWorkflow,
} from '../../contract/index.ts';
import { qualityLine } from '../../eval/quality-line.ts';
import type { CheckpointStore } from '../../store/index.ts';
import type { DemoProcesses } from './demo-processes.ts';
import type { LossPoint } from './demo-render.ts';
import { runProgress } from './run-progress.ts';
import { progressLine } from './train.ts';

/** The worker the demo kills, and what it saw: the step it killed at, the checkpoint the run must resume
 *  from, and how long the resume took. */
export interface DemoKill {
  atStep: number;
  checkpointStep: number;
  at: number;
  resumedAfterMs?: number;
}

export interface WatchedRun {
  result: TrainDalleResult;
  losses: LossPoint[];
  quality: QualityPoint[];
  /** Wall seconds of a stage (dvae, encode, transformer, rerank, publish), null when it was never seen. */
  stageSeconds(stage: string): number | null;
  kill: DemoKill | undefined;
}

const VICTIM = 1;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** When each stage was first and last seen in the progress (a stage ends when the next one shows). */
class StageClock {
  private readonly start: Record<string, number> = {};
  private readonly end: Record<string, number> = {};
  private last = '';

  observe(stage: string): void {
    if (stage === this.last) return;
    if (this.last) this.end[this.last] = Date.now();
    this.start[stage] = Date.now();
    this.last = stage;
  }

  finish(): void {
    this.end[this.last] = Date.now();
  }

  seconds(stage: string): number | null {
    const s = this.start[stage];
    const e = this.end[stage];
    return e && s ? (e - s) / 1000 : null;
  }
}

/** Mid-dVAE, past a committed checkpoint and mid-segment, so the kill really interrupts ranks at work. */
function timeToKill(p: RunProgress, spec: RunSpec): boolean {
  const inSegment = p.step % spec.train.segmentSteps;
  const midSegment =
    inSegment > 5 && inSegment < spec.train.segmentSteps - 5 && p.step > p.checkpointStep + 2;
  return p.stage === 'dvae' && p.step >= spec.dvae.steps / 2 && p.checkpointStep > 0 && midSegment;
}

/** Watches `handle` to its end; `killWorker` makes it SIGKILL worker 1 once, mid-dVAE. */
export async function watchTraining(opts: {
  client: Client;
  checkpoints: CheckpointStore;
  handle: WorkflowHandle<TrainDalleWorkflow>;
  runId: string;
  spec: RunSpec;
  processes: DemoProcesses;
  killWorker: boolean;
  say: (line: string) => void;
}): Promise<WatchedRun> {
  const { client, checkpoints, runId, spec, say } = opts;
  const losses: LossPoint[] = [];
  let quality: QualityPoint[] = [];
  const clock = new StageClock();
  let kill: DemoKill | undefined;
  let lastLine = 0;
  let done = false;
  const resultP = opts.handle.result().finally(() => void (done = true));
  while (!done) {
    await sleep(1000);
    const p = await runProgress(client, checkpoints, runId);
    if (!p) continue;
    for (const q of p.quality ?? [])
      if (!quality.some((x) => x.at === q.at)) say(`quality: ${qualityLine(q)}`);
    if (p.quality?.length) quality = p.quality;
    clock.observe(p.stage);
    if (
      (p.stage === 'dvae' || p.stage === 'transformer') &&
      p.loss !== null &&
      losses.at(-1)?.step !== p.step
    ) {
      losses.push({ stage: p.stage, step: p.step, loss: p.loss });
    }
    if (Date.now() - lastLine > 5000) {
      lastLine = Date.now();
      say(progressLine(p));
    }
    if (opts.killWorker && !kill && timeToKill(p, spec)) kill = await killVictim(p, opts.processes, say);
    if (kill && kill.resumedAfterMs === undefined && p.restarts > 0 && p.step > kill.checkpointStep) {
      kill.resumedAfterMs = Date.now() - kill.at;
      say(
        `>>> resumed: restart counted, progress at step ${p.step} again from checkpoint ${kill.checkpointStep}, ${(kill.resumedAfterMs / 1000).toFixed(1)} s after the kill (lost ${kill.atStep - kill.checkpointStep} steps ≤ checkpointEvery ${spec.train.checkpointEvery})`,
      );
    }
  }
  const result = await resultP;
  clock.finish();
  // The last checkpoint's measurement may have landed after the last poll.
  const final = await runProgress(client, checkpoints, runId);
  if (final?.quality?.length) quality = final.quality;
  say(
    `trained: dVAE loss ${result.dvae.loss.toFixed(4)}, transformer loss ${result.transformer.loss.toFixed(4)}, restarts ${result.restarts}; published ${result.model.name} v${result.model.version}`,
  );
  return { result, losses, quality, stageSeconds: (s) => clock.seconds(s), kill };
}

async function killVictim(
  p: RunProgress,
  processes: DemoProcesses,
  say: (line: string) => void,
): Promise<DemoKill> {
  say(
    `>>> killing worker ${VICTIM} (pid ${processes.workers[VICTIM]!.pid}) with SIGKILL at dVAE step ${p.step}; last committed checkpoint: step ${p.checkpointStep}`,
  );
  const kill = { atStep: p.step, checkpointStep: p.checkpointStep, at: Date.now() };
  await processes.killAndReplaceWorker(VICTIM);
  return kill;
}
