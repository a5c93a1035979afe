// Credentials and TLS files of every connection, read from the environment in one place. Names follow the
// tools operators already use: NATS's (`nats` CLI: NATS_USER, NATS_CREDS, NATS_CA, …), Temporal's (the
// `temporal` CLI: TEMPORAL_TLS_*, TEMPORAL_API_KEY) and ours for the sampler (DALLE_SAMPLER_*). Secrets are
// read here and handed to the clients; nothing in this module (or its errors) ever prints one.
import { readFileSync } from 'node:fs';

/** A security variable is missing a partner, names an unreadable file, or conflicts with another. */
export class SecurityConfigError extends Error {
  override name = 'SecurityConfigError';
  /** A worker cannot fix it by retrying, and a CLI prints just the message. */
  readonly fatal = true;
  readonly userError = true;
  constructor(
    /** The variable(s) at fault, e.g. `NATS_CERT` or `NATS_TOKEN, NATS_CREDS`. */
    readonly variable: string,
    readonly problem: string,
  ) {
    super(`${variable}: ${problem}`);
  }
}

type Env = NodeJS.ProcessEnv;

function get(env: Env, key: string): string | undefined {
  const v = env[key]?.trim();
  return v ? v : undefined;
}

function flag(env: Env, key: string): boolean {
  const v = get(env, key)?.toLowerCase();
  if (v === undefined || v === '0' || v === 'false' || v === 'no') return false;
  if (v === '1' || v === 'true' || v === 'yes') return true;
  throw new SecurityConfigError(key, `must be true/false (or 1/0), got '${v}'`);
}

/** The bytes of the file a variable names; an unreadable file is an error naming the variable. */
export function readNamedFile(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new SecurityConfigError(variable, `cannot read '${path}': ${(e as NodeJS.ErrnoException).code}`);
  }
}

/** A PEM given inline (`…_DATA`) or by path (`…_PATH`); both at once is ambiguous. */
function pem(env: Env, base: string): Buffer | undefined {
  const [pathVar, dataVar] = [`${base}_PATH`, `${base}_DATA`];
  const path = get(env, pathVar);
  const data = get(env, dataVar);
  if (path && data) throw new SecurityConfigError(`${pathVar}, ${dataVar}`, 'set one of them, not both');
  if (path) return readNamedFile(pathVar, path);
  return data === undefined ? undefined : Buffer.from(data);
}

// ---- NATS ------------------------------------------------------------------------------------------------

export type NatsAuth =
  | { kind: 'none' }
  | { kind: 'user'; user: string; password: string; from: string }
  | { kind: 'token'; token: string; from: string }
  | { kind: 'nkey'; seed: Uint8Array; from: string }
  | { kind: 'creds'; creds: Uint8Array; from: string };

export interface NatsSecurity {
  /** The server URL without credentials (safe to print). */
  url: string;
  auth: NatsAuth;
  /** TLS when the URL is tls:// or any TLS file is set. Files are read by the client. */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
  /** Scoped signing key (seed file) that mints per-run credentials for ranks (see run-credentials.ts). */
  rankSignerFile?: string;
  /** Replies come to `<prefix>.…` instead of `_INBOX.…` (a role may only read its own inbox). */
  inboxPrefix?: string;
}

/** NATS_URL (userinfo becomes user/password or a token: nats.js itself ignores it), NATS_USER +
 *  NATS_PASSWORD, NATS_TOKEN, NATS_NKEY (seed file), NATS_CREDS (.creds file: JWT + seed), NATS_CA,
 *  NATS_CERT + NATS_KEY (client certificate), NATS_INBOX_PREFIX, NATS_RANK_SIGNING_KEY. At most one way
 *  to authenticate. */
export function natsSecurity(env: Env = process.env): NatsSecurity {
  const raw = get(env, 'NATS_URL') ?? 'nats://127.0.0.1:4222';
  const { url, user: urlUser, password: urlPassword } = splitUserinfo(raw);
  const ways: NatsAuth[] = [];
  const user = get(env, 'NATS_USER');
  const password = get(env, 'NATS_PASSWORD');
  if (password !== undefined && user === undefined)
    throw new SecurityConfigError('NATS_PASSWORD', 'is set without NATS_USER');
  if (user !== undefined) {
    if (password === undefined) throw new SecurityConfigError('NATS_USER', 'is set without NATS_PASSWORD');
    ways.push({ kind: 'user', user, password, from: 'NATS_USER' });
  }
  const token = get(env, 'NATS_TOKEN');
  if (token !== undefined) ways.push({ kind: 'token', token, from: 'NATS_TOKEN' });
  const nkey = get(env, 'NATS_NKEY');
  if (nkey !== undefined)
    ways.push({
      kind: 'nkey',
      seed: seedOf(readNamedFile('NATS_NKEY', nkey), 'NATS_NKEY'),
      from: 'NATS_NKEY',
    });
  const creds = get(env, 'NATS_CREDS');
  if (creds !== undefined)
    ways.push({ kind: 'creds', creds: readNamedFile('NATS_CREDS', creds), from: 'NATS_CREDS' });
  if (urlUser !== undefined) {
    ways.push(
      urlPassword === undefined
        ? { kind: 'token', token: urlUser, from: 'NATS_URL' }
        : { kind: 'user', user: urlUser, password: urlPassword, from: 'NATS_URL' },
    );
  }
  if (ways.length > 1) {
    throw new SecurityConfigError(
      ways.map((w) => (w.kind === 'none' ? '' : w.from)).join(', '),
      'set one way to authenticate to NATS, not several',
    );
  }
  const [caFile, certFile, keyFile] = ['NATS_CA', 'NATS_CERT', 'NATS_KEY'].map((k) => get(env, k));
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new SecurityConfigError(
      certFile ? 'NATS_CERT' : 'NATS_KEY',
      'needs its partner (NATS_CERT and NATS_KEY)',
    );
  for (const [k, f] of [
    ['NATS_CA', caFile],
    ['NATS_CERT', certFile],
    ['NATS_KEY', keyFile],
  ] as const)
    if (f !== undefined) readNamedFile(k, f);
  const wantsTls = url.startsWith('tls://') || caFile || certFile;
  const rankSignerFile = get(env, 'NATS_RANK_SIGNING_KEY');
  if (rankSignerFile !== undefined)
    seedOf(readNamedFile('NATS_RANK_SIGNING_KEY', rankSignerFile), 'NATS_RANK_SIGNING_KEY');
  return {
    url,
    auth: ways[0] ?? { kind: 'none' },
    tls: wantsTls ? { caFile, certFile, keyFile } : undefined,
    rankSignerFile,
    inboxPrefix: get(env, 'NATS_INBOX_PREFIX'),
  };
}

/** `nats://user:pass@host:4222` → the URL without userinfo and the (URL-decoded) parts. */
function splitUserinfo(raw: string): { url: string; user?: string; password?: string } {
  const m = /^([a-z]+:\/\/)?([^@/]*)@(.*)$/.exec(raw);
  if (!m) return { url: raw };
  const [, scheme = '', info = '', rest = ''] = m;
  const colon = info.indexOf(':');
  const dec = (s: string) => decodeURIComponent(s);
  return colon < 0
    ? { url: `${scheme}${rest}`, user: dec(info) }
    : { url: `${scheme}${rest}`, user: dec(info.slice(0, colon)), password: dec(info.slice(colon + 1)) };
}

/** The seed in an NKEY seed file (the first line starting with 'S'), as bytes. */
export function seedOf(bytes: Uint8Array, variable: string): Uint8Array {
  const line = new TextDecoder()
    .decode(bytes)
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => /^S[A-Z2-7]{50,}$/.test(l));
  if (!line) throw new SecurityConfigError(variable, 'the file holds no NKEY seed (a line starting with S)');
  return new TextEncoder().encode(line);
}

// ---- Temporal --------------------------------------------------------------------------------------------

export interface TemporalSecurity {
  address: string;
  namespace: string;
  tls?: {
    serverRootCACertificate?: Buffer;
    clientCertPair?: { crt: Buffer; key: Buffer };
    serverNameOverride?: string;
  };
  apiKey?: string;
}

/** TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS, TEMPORAL_TLS_SERVER_CA_CERT_{PATH,DATA},
 *  TEMPORAL_TLS_CLIENT_CERT_{PATH,DATA} + TEMPORAL_TLS_CLIENT_KEY_{PATH,DATA}, TEMPORAL_TLS_SERVER_NAME,
 *  TEMPORAL_API_KEY: the `temporal` CLI's names, so one environment serves both. */
export function temporalSecurity(env: Env = process.env): TemporalSecurity {
  const ca = pem(env, 'TEMPORAL_TLS_SERVER_CA_CERT');
  const crt = pem(env, 'TEMPORAL_TLS_CLIENT_CERT');
  const key = pem(env, 'TEMPORAL_TLS_CLIENT_KEY');
  if ((crt === undefined) !== (key === undefined)) {
    throw new SecurityConfigError(
      crt ? 'TEMPORAL_TLS_CLIENT_CERT_PATH' : 'TEMPORAL_TLS_CLIENT_KEY_PATH',
      'needs its partner (client certificate and key)',
    );
  }
  if (flag(env, 'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION')) {
    throw new SecurityConfigError(
      'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION',
      'is not supported by the TypeScript SDK; set TEMPORAL_TLS_SERVER_NAME to the name in the certificate',
    );
  }
  const serverName = get(env, 'TEMPORAL_TLS_SERVER_NAME');
  const apiKey = get(env, 'TEMPORAL_API_KEY');
  // As the CLI does: TLS is on when asked for, or when any TLS option or an API key is set.
  const tlsOn = flag(env, 'TEMPORAL_TLS') || !!(ca || crt || serverName || apiKey);
  return {
    address: get(env, 'TEMPORAL_ADDRESS') ?? '127.0.0.1:7233',
    namespace: get(env, 'TEMPORAL_NAMESPACE') ?? 'default',
    tls: tlsOn
      ? {
          serverRootCACertificate: ca,
          clientCertPair: crt && key ? { crt, key } : undefined,
          serverNameOverride: serverName,
        }
      : undefined,
    apiKey,
  };
}

// ---- Sampler (gRPC) --------------------------------------------------------------------------------------

export interface SamplerServerSecurity {
  /** Server certificate chain and key (PEM); absent: plaintext. */
  tls?: { cert: Buffer; key: Buffer; clientCa?: Buffer };
  /** Every call except health checks must carry `authorization: Bearer <token>`. */
  token?: string;
}

export interface SamplerClientSecurity {
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; serverName?: string };
  token?: string;
}

/** DALLE_SAMPLER_TLS_CERT + DALLE_SAMPLER_TLS_KEY (server identity), DALLE_SAMPLER_TLS_CLIENT_CA (require
 *  client certificates signed by it: mutual TLS), DALLE_SAMPLER_TOKEN (bearer token every call needs). */
export function samplerServerSecurity(env: Env = process.env): SamplerServerSecurity {
  const certFile = get(env, 'DALLE_SAMPLER_TLS_CERT');
  const keyFile = get(env, 'DALLE_SAMPLER_TLS_KEY');
  const clientCaFile = get(env, 'DALLE_SAMPLER_TLS_CLIENT_CA');
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new SecurityConfigError(
      certFile ? 'DALLE_SAMPLER_TLS_CERT' : 'DALLE_SAMPLER_TLS_KEY',
      'needs its partner (DALLE_SAMPLER_TLS_CERT and DALLE_SAMPLER_TLS_KEY)',
    );
  if (clientCaFile && !certFile)
    throw new SecurityConfigError(
      'DALLE_SAMPLER_TLS_CLIENT_CA',
      'mutual TLS needs DALLE_SAMPLER_TLS_CERT/KEY too',
    );
  const token = get(env, 'DALLE_SAMPLER_TOKEN');
  return {
    tls:
      certFile && keyFile
        ? {
            cert: readNamedFile('DALLE_SAMPLER_TLS_CERT', certFile),
            key: readNamedFile('DALLE_SAMPLER_TLS_KEY', keyFile),
            clientCa: clientCaFile ? readNamedFile('DALLE_SAMPLER_TLS_CLIENT_CA', clientCaFile) : undefined,
          }
        : undefined,
    token,
  };
}

/** DALLE_SAMPLER_TLS (on, trusting the system's CAs), DALLE_SAMPLER_TLS_CA (trust this CA; implies TLS),
 *  DALLE_SAMPLER_TLS_CLIENT_CERT + DALLE_SAMPLER_TLS_CLIENT_KEY (this client's certificate for mutual TLS),
 *  DALLE_SAMPLER_TLS_SERVER_NAME (name to expect in the server's certificate), DALLE_SAMPLER_TOKEN. */
export function samplerClientSecurity(env: Env = process.env): SamplerClientSecurity {
  const caFile = get(env, 'DALLE_SAMPLER_TLS_CA');
  const certFile = get(env, 'DALLE_SAMPLER_TLS_CLIENT_CERT');
  const keyFile = get(env, 'DALLE_SAMPLER_TLS_CLIENT_KEY');
  if ((certFile === undefined) !== (keyFile === undefined))
    throw new SecurityConfigError(
      certFile ? 'DALLE_SAMPLER_TLS_CLIENT_CERT' : 'DALLE_SAMPLER_TLS_CLIENT_KEY',
      'needs its partner (DALLE_SAMPLER_TLS_CLIENT_CERT and DALLE_SAMPLER_TLS_CLIENT_KEY)',
    );
  const serverName = get(env, 'DALLE_SAMPLER_TLS_SERVER_NAME');
  const on = flag(env, 'DALLE_SAMPLER_TLS') || !!(caFile || certFile || serverName);
  return {
    tls: on
      ? {
          ca: caFile ? readNamedFile('DALLE_SAMPLER_TLS_CA', caFile) : undefined,
          cert: certFile ? readNamedFile('DALLE_SAMPLER_TLS_CLIENT_CERT', certFile) : undefined,
          key: keyFile ? readNamedFile('DALLE_SAMPLER_TLS_CLIENT_KEY', keyFile) : undefined,
          serverName,
        }
      : undefined,
    token: get(env, 'DALLE_SAMPLER_TOKEN'),
  };
}
