// The backends a benchmark measures: each named one that starts here, once (two names can resolve to the
// same backend); the ones that cannot start are recorded in `skipped` with the reason.
import * as tf from '@tensorflow/tfjs';
import { initTfBackend, type TfBackendName } from '../../model/index.ts';

export async function* availableTfBackends(
  names: readonly TfBackendName[],
  skipped: Record<string, string>,
): AsyncGenerator<string> {
  const seen = new Set<string>();
  for (const b of names) {
    try {
      await initTfBackend(b);
    } catch (e) {
      skipped[b] = (e as Error).message.replace(/\s*\n\s*-?\s*/g, ' ');
      continue;
    }
    const got = tf.getBackend();
    if (seen.has(got)) continue;
    seen.add(got);
    yield got;
  }
}
