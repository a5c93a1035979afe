// Every NATS connection of every process (worker, sampler, CLI, demo, tests) is built here from the
// environment (settings.ts), so credentials and TLS are configured one way everywhere.
import { isIP } from 'node:net';
import {
  connect,
  credsAuthenticator,
  nkeyAuthenticator,
  tokenAuthenticator,
  usernamePasswordAuthenticator,
  type ConnectionOptions,
  type NatsConnection,
} from 'nats';
import { natsSecurity, type NatsSecurity } from './settings.ts';

/** What a log line may say about a connection's identity: the method and where it came from, never the
 *  secret (`creds file /etc/dalle/worker.creds`, `user alice (NATS_USER)`, `token (NATS_TOKEN)`). */
export function describeNatsAuth(s: NatsSecurity): string {
  const a = s.auth;
  const how =
    a.kind === 'none'
      ? 'no credentials'
      : a.kind === 'user'
        ? `user ${a.user} (${a.from})`
        : a.kind === 'creds'
          ? `creds (${a.from})`
          : `${a.kind} (${a.from})`;
  return `${how}${s.tls ? ', TLS' : ''}`;
}

/** nats.js options for `s` (servers, authenticator, tls) merged with the caller's (name, reconnect, …). */
export function natsOptions(s: NatsSecurity, extra: Partial<ConnectionOptions> = {}): ConnectionOptions {
  const a = s.auth;
  const authenticator =
    a.kind === 'user'
      ? usernamePasswordAuthenticator(a.user, a.password)
      : a.kind === 'token'
        ? tokenAuthenticator(a.token)
        : a.kind === 'nkey'
          ? nkeyAuthenticator(a.seed)
          : a.kind === 'creds'
            ? credsAuthenticator(a.creds)
            : undefined;
  return {
    servers: s.url,
    ...(authenticator ? { authenticator } : {}),
    ...(s.tls ? { tls: tlsOptions(s) } : {}),
    ...(s.inboxPrefix ? { inboxPrefix: s.inboxPrefix } : {}),
    ...extra,
  };
}

function tlsOptions(s: NatsSecurity): NonNullable<ConnectionOptions['tls']> {
  const t = s.tls!;
  const o: Record<string, string> = {};
  if (t.caFile) o.caFile = t.caFile;
  if (t.certFile) o.certFile = t.certFile;
  if (t.keyFile) o.keyFile = t.keyFile;
  // nats.js sends the host as SNI; for an IP address Node warns on every connection (RFC 6066 forbids
  // it). No SNI then: the certificate is still checked against the IP (the server certificate has it).
  const host = /^[a-z]+:\/\/\[?([^\]/]+?)\]?(:\d+)?$/.exec(s.url)?.[1];
  if (host && isIP(host)) o.servername = '';
  return o;
}

/** A NATS connection could not be opened; says where and with which identity (never the secret). */
export class NatsConnectError extends Error {
  override name = 'NatsConnectError';
  constructor(
    readonly url: string,
    readonly identity: string,
    readonly code: string | undefined,
    detail: string,
  ) {
    super(`cannot connect to NATS at ${url} with ${identity}: ${detail}`);
  }
}

/** Connects with the environment's credentials. `extra` may override anything (tests pass their own). */
export async function connectNats(
  extra: Partial<ConnectionOptions> = {},
  s: NatsSecurity = natsSecurity(),
): Promise<NatsConnection> {
  try {
    return await connect(natsOptions(s, extra));
  } catch (e) {
    const err = e as Error & { code?: string };
    const hint =
      err.code === 'AUTHORIZATION_VIOLATION'
        ? 'the server refused these credentials (see NATS_CREDS / NATS_USER / NATS_TOKEN / NATS_NKEY)'
        : err.message;
    throw new NatsConnectError(s.url, describeNatsAuth(s), err.code, hint);
  }
}

/** `nats://user:secret@host:4222` → `nats://user:***@host:4222`: for any URL that is printed. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/)?([^@/]*)@/, (_m, scheme: string | undefined, info: string) => {
    const colon = info.indexOf(':');
    return `${scheme ?? ''}${colon < 0 ? '***' : `${info.slice(0, colon)}:***`}@`;
  });
}
