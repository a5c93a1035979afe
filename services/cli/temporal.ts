// The Temporal client every CLI command uses.
import { Client, Connection } from '@temporalio/client';
import { serviceEnv } from '../../infra/services.ts';
import { temporalClientInterceptors } from '../../telemetry/index.ts';

export async function temporalClient(): Promise<{ client: Client; close: () => Promise<void> }> {
  const env = serviceEnv();
  const connection = await Connection.connect({ address: env.temporalAddress, connectTimeout: 5000 }).catch(
    (e: Error) => {
      throw new Error(`cannot reach Temporal at ${env.temporalAddress} (run 'dalle up'?): ${e.message}`);
    },
  );
  // Interceptors: starting a workflow carries the caller's trace context into it (no-op without telemetry).
  return {
    client: new Client({
      connection,
      namespace: env.temporalNamespace,
      interceptors: temporalClientInterceptors(),
    }),
    close: () => connection.close(),
  };
}
