// Options of every Temporal connection (the CLI's and workers' clients, the workers' native connection),
// built from the `temporal` CLI's environment variables (settings.ts): address, namespace, TLS / mutual
// TLS, API key. This file imports only @temporalio/client, so a CLI command never loads the worker SDK.
import { Connection, type ConnectionOptions } from '@temporalio/client';
import { temporalSecurity, type TemporalSecurity } from './settings.ts';

/** Address, TLS and API key, in the shape both `Connection.connect` and `NativeConnection.connect` take. */
export function temporalConnectionOptions(s: TemporalSecurity = temporalSecurity()): {
  address: string;
  tls?: NonNullable<TemporalSecurity['tls']>;
  apiKey?: string;
} {
  return {
    address: s.address,
    ...(s.tls ? { tls: s.tls } : {}),
    ...(s.apiKey ? { apiKey: s.apiKey } : {}),
  };
}

/** How a connection authenticates, for messages (never the key itself). */
export function describeTemporalAuth(s: TemporalSecurity): string {
  const parts = [s.tls ? (s.tls.clientCertPair ? 'mutual TLS' : 'TLS') : 'plaintext'];
  if (s.apiKey) parts.push('API key (TEMPORAL_API_KEY)');
  return parts.join(', ');
}

/** A client connection with the environment's settings; a failure names the address and the auth used. */
export async function connectTemporal(
  extra: Partial<ConnectionOptions> = {},
  s: TemporalSecurity = temporalSecurity(),
): Promise<Connection> {
  try {
    return await Connection.connect({ ...temporalConnectionOptions(s), ...extra });
  } catch (e) {
    throw new Error(
      `cannot reach Temporal at ${s.address} (${describeTemporalAuth(s)}; run 'dalle up'?): ${(e as Error).message}`,
      { cause: e },
    );
  }
}
