// Rank 0's question at every checkpoint: should the world size change here? The stage workflow knows the
// size it was asked for (setWorldSize, answered by its `worldSize` query, which adds nothing to history);
// an elastic run also counts idle worker slots it could grow onto. Any failure to ask keeps the segment
// going: a resize can wait for the next checkpoint, a training step should not.
import type { Client } from '@temporalio/client';
import type { NatsConnection } from 'nats';
import { nextWorldSize, stageWorkflowId, worldSizeQuery, type TrainShardInput } from '../contract/index.ts';
import { idleSlots, surveyWorkers } from './presence.ts';

export interface ResizeDeps {
  client: Client;
  nc: NatsConnection;
  taskQueue: string;
  log: (msg: string, fields?: Record<string, unknown>) => void;
}

const ASK_TIMEOUT_MS = 5000;

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms))),
  ]).finally(() => clearTimeout(t));
}

/** The world size the next segment should have, or 0 to keep this one; an elastic run grows in whole
 *  `unit`s of ranks (a sharded run's ranks per host). */
export async function resizeDecision(deps: ResizeDeps, input: TrainShardInput, unit = 1): Promise<number> {
  const { runId, stage, spec, worldSize } = input;
  let wanted = worldSize;
  try {
    const stageHandle = deps.client.workflow.getHandle(stageWorkflowId(runId, stage));
    wanted = await within(stageHandle.query(worldSizeQuery), ASK_TIMEOUT_MS);
  } catch (e) {
    deps.log('could not ask the stage for its world size; keeping it', { error: String(e) });
  }
  let idle = 0;
  if (spec.train.elastic) {
    try {
      idle = idleSlots(await surveyWorkers(deps.nc, deps.taskQueue));
    } catch (e) {
      deps.log('could not survey the workers; not growing', { error: String(e) });
    }
  }
  return nextWorldSize(spec, worldSize, wanted, idle, unit, stage) ?? 0;
}
