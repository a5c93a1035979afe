// Host-aware placement of a sharded segment: which hosts take its ranks, from the workers' presence
// answers. The layout is even (every piece of the parameters needs a holder on every host) and as local
// as the free slots allow: the largest G dividing W such that W/G hosts have G free slots each, so that as
// little as possible crosses hosts. Hosts are taken in order of their id, so that the same answers always
// give the same placement.
import { hostTaskQueue, type RankPlacement } from '../contract/index.ts';
import type { WorkerPresence } from './presence.ts';

/** Free rank slots per host id, over the workers that answered. */
export function freeSlotsByHost(workers: readonly WorkerPresence[]): Map<string, number> {
  const free = new Map<string, number>();
  for (const w of workers) free.set(w.hostId, (free.get(w.hostId) ?? 0) + Math.max(0, w.slots - w.busy));
  return free;
}

/** The placement of `worldSize` ranks on the hosts of `workers` (rank h·G + l on host h's queue), or one
 *  with no queues (every rank on the shared queue) when no even layout with G ≥ 2 fits. */
export function planPlacement(
  workers: readonly WorkerPresence[],
  worldSize: number,
  taskQueue: string,
): RankPlacement {
  const free = freeSlotsByHost(workers);
  const ids = [...free.keys()].sort();
  for (let perHost = worldSize; perHost >= 2; perHost--) {
    if (worldSize % perHost !== 0) continue;
    const hosts = ids.filter((id) => free.get(id)! >= perHost).slice(0, worldSize / perHost);
    if (hosts.length < worldSize / perHost) continue;
    const queues = Array.from({ length: worldSize }, (_, r) =>
      hostTaskQueue(taskQueue, hosts[Math.floor(r / perHost)]!),
    );
    return { queues, hosts, perHost };
  }
  const seen = ids.map((id) => `${id}: ${free.get(id)}`).join(', ') || 'no worker answered';
  return {
    queues: [],
    hosts: [],
    perHost: 1,
    why: `no even layout of ${worldSize} ranks with ≥ 2 per host in the free slots (${seen})`,
  };
}
