// W ranks of a collective group inside one process, for benchmarks that want the arithmetic of a
// data-parallel step (PowerSGD's compression and error feedback across ranks) without NATS. Every rank
// must call the same operations in the same order, as with a real group; the sum is taken in rank order
// in fp32, so every rank gets the same bits. The fp16 wire is not simulated (values stay fp32).
import { zeroCounters, type AllReduceOptions, type Group } from '../../collective/index.ts';

export function localGroups(worldSize: number, runId = 'local'): Group[] {
  const pending = new Map<
    string,
    { parts: (Float32Array | undefined)[]; waiters: ((v: Float32Array) => void)[] }
  >();
  const seq = new Array<number>(worldSize).fill(0);
  const stats = zeroCounters;
  return Array.from({ length: worldSize }, (_, rank): Group => {
    const allReduce = (data: Float32Array, stepOrOpts: number | AllReduceOptions, tag?: string) => {
      const o = typeof stepOrOpts === 'number' ? { step: stepOrOpts, tag } : stepOrOpts;
      const key = `${o.step}/${o.tag ?? 'ar'}/${seq[rank]!++}`;
      let slot = pending.get(key);
      if (!slot) pending.set(key, (slot = { parts: new Array(worldSize), waiters: [] }));
      slot.parts[rank] = data.slice();
      return new Promise<Float32Array>((resolve) => {
        slot.waiters.push(resolve);
        if (slot.parts.filter(Boolean).length < worldSize) return;
        pending.delete(key);
        const sum = new Float32Array(data.length);
        for (const p of slot.parts) for (let i = 0; i < sum.length; i++) sum[i]! += p![i]!;
        if (o.average) for (let i = 0; i < sum.length; i++) sum[i]! /= worldSize;
        for (const w of slot.waiters) w(sum.slice());
      });
    };
    return {
      rank,
      worldSize,
      runId,
      groupId: 'local',
      allReduce: allReduce as Group['allReduce'],
      barrier: async () => undefined,
      counters: stats,
      close: async () => undefined,
    };
  });
}
