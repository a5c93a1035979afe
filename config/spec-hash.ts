// The identity of a run's mathematics: what its checkpoints can only be resumed with. Operational knobs
// (world size, timeouts, segment and checkpoint cadence, retention, restart budget) may change between
// launches of one run; everything else may not, or a resumed run would silently train a different model.
import { createHash } from 'node:crypto';
import type { RunSpec } from './spec.ts';

/** JSON with object keys sorted, so equal specs hash equally whatever their key order. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v && typeof v === 'object')
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(v);
}

/** Train fields that may change between launches of one run. */
const OPERATIONAL = new Set([
  'worldSize',
  'segmentSteps',
  'checkpointEvery',
  'heartbeatTimeout',
  'collectiveTimeout',
  'joinTimeout',
  'stepTimeout',
  'keepCheckpoints',
  'maxRestarts',
]);

/** sha256 (hex) of the parts of a spec a checkpoint depends on. */
export function specHash(spec: RunSpec): string {
  const train = Object.fromEntries(Object.entries(spec.train).filter(([k]) => !OPERATIONAL.has(k)));
  return createHash('sha256')
    .update(canonical({ ...spec, train }))
    .digest('hex');
}
