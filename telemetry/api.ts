// The light half of telemetry/: tracer, meter and attribute names over @opentelemetry/api alone, so hot
// libraries (collective/, store/) can make spans and record metrics without loading the SDK and its
// exporters (≈1 s of imports per process on this machine). The process's `initTelemetry` (setup.ts)
// decides where they go.
import { metrics, trace, type Meter, type Tracer } from '@opentelemetry/api';

/** Instrumentation scope of every dalle span and metric. */
export const INSTRUMENTATION_SCOPE = 'dalle';
export const VERSION = '0.1.0';

/** Resource / span attribute carrying the run id (the workflow id of `trainDalle`). */
export const ATTR_RUN_ID = 'dalle.run_id';

let generation = 0;

/** dalle's tracer. A proxy: valid before `initTelemetry`, records once a provider is registered. */
export function getTracer(): Tracer {
  return trace.getTracer(INSTRUMENTATION_SCOPE, VERSION);
}

/** dalle's meter from the current provider (the API's no-op meter when metrics are not exported). Prefer
 *  the typed instruments of `dalleMetrics()` (telemetry/metrics.ts). */
export function getMeter(): Meter {
  return metrics.getMeter(INSTRUMENTATION_SCOPE, VERSION);
}

/** Changes whenever the meter provider may have changed, for caches of instruments. */
export function telemetryGeneration(): number {
  return generation;
}

/** setup.ts calls this on every init and shutdown. */
export function bumpTelemetryGeneration(): void {
  generation++;
}
