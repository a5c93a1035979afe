// The Temporal client every CLI command uses (address, namespace, TLS and API key from the environment).
import { Client } from '@temporalio/client';
import { temporalSecurity } from '../../security/settings.ts';
import { connectTemporal } from '../../security/temporal.ts';
import { temporalClientInterceptors } from '../../telemetry/index.ts';

export async function temporalClient(): Promise<{ client: Client; close: () => Promise<void> }> {
  const sec = temporalSecurity();
  const connection = await connectTemporal({ connectTimeout: 5000 }, sec);
  // Interceptors: starting a workflow carries the caller's trace context into it (no-op without telemetry).
  return {
    client: new Client({
      connection,
      namespace: sec.namespace,
      interceptors: temporalClientInterceptors(),
    }),
    close: () => connection.close(),
  };
}
