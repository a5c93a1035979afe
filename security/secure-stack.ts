// Everything a secured local stack (`dalle up --secure`) needs, under $DALLE_HOME/secure:
//
//   pki/              CA, server certificate (NATS, Temporal, sampler), client certificates per role
//   nats/             operator/account keys, the rank signing key, <role>.creds
//   nats-server.conf  TLS with client certificates required + JWT auth (no anonymous access)
//   <role>.env        the variables a process of that role needs (worker, sampler, cli, admin):
//                     `. $DALLE_HOME/secure/worker.env && dalle worker`
//   stack.json        addresses, so `dalle up --check` and `dalle down` know the stack is secured
//
// Files holding keys, seeds or tokens are 0600 and nothing here prints them.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureNatsAccounts, inboxPrefix, ROLES, type Role } from './nats-accounts.ts';
import { ensurePki } from './pki.ts';

export interface SecureStackAddresses {
  /** host:port nats-server listens on (clients use tls://host:port). */
  nats: { host: string; port: number };
  /** host:port of the TLS front of Temporal (the dev server itself listens on loopback behind it). */
  temporal: { host: string; port: number };
  /** The dev server's own port on 127.0.0.1, behind the front. */
  temporalBackendPort: number;
  /** host:port the sampler should listen on. */
  sampler: string;
}

export interface SecureStack extends SecureStackAddresses {
  dir: string;
  natsConfig: string;
  /** Server certificate + key and the CA, for the Temporal TLS front and the sampler. */
  serverCert: string;
  serverKey: string;
  ca: string;
  envFile: (role: Role) => string;
}

export function secureDir(home: string): string {
  return join(home, 'secure');
}

/** The stack recorded by the last `dalle up --secure` under this home, if any. */
export function recordedSecureStack(home: string): SecureStackAddresses | undefined {
  const f = join(secureDir(home), 'stack.json');
  return existsSync(f) ? (JSON.parse(readFileSync(f, 'utf8')) as SecureStackAddresses) : undefined;
}

function writeSecret(path: string, text: string): void {
  writeFileSync(path, text, { mode: 0o600 });
}

/** Creates (or completes) the secured stack's files for these addresses. Idempotent. */
export async function prepareSecureStack(
  home: string,
  at: SecureStackAddresses,
  natsDataDir: string,
): Promise<SecureStack> {
  const dir = secureDir(home);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const hosts = [at.nats.host, at.temporal.host, at.sampler.slice(0, at.sampler.lastIndexOf(':'))];
  const pki = ensurePki(join(dir, 'pki'), hosts);
  const accounts = await ensureNatsAccounts(join(dir, 'nats'));
  const tokenFile = join(dir, 'sampler-token');
  if (!existsSync(tokenFile)) writeSecret(tokenFile, randomBytes(32).toString('hex'));
  const token = readFileSync(tokenFile, 'utf8').trim();

  const natsConfig = join(dir, 'nats-server.conf');
  writeSecret(
    natsConfig,
    [
      `host: "${at.nats.host}"`,
      `port: ${at.nats.port}`,
      `jetstream { store_dir: "${natsDataDir}" }`,
      // Every client must present a certificate of our CA, and then authenticate as a JWT user.
      `tls { cert_file: "${pki.server.cert}", key_file: "${pki.server.key}", ca_file: "${pki.ca}", verify: true, timeout: 5 }`,
      accounts.serverConfig,
      '',
    ].join('\n'),
  );

  const envFile = (role: Role) => join(dir, `${role}.env`);
  // TLS clients send the host as SNI, and Node warns when that is an IP address: on loopback, expect the
  // certificate's `localhost` name instead (the certificate carries both).
  const loopbackIp = (h: string) => /^127\.\d+\.\d+\.\d+$/.test(h);
  const samplerHost = at.sampler.slice(0, at.sampler.lastIndexOf(':'));
  for (const role of ROLES) {
    const client = pki.client(role);
    const vars: Record<string, string> = {
      NATS_URL: `tls://${at.nats.host}:${at.nats.port}`,
      NATS_CA: pki.ca,
      NATS_CERT: client.cert,
      NATS_KEY: client.key,
      NATS_CREDS: accounts.creds[role],
      ...(inboxPrefix(role) ? { NATS_INBOX_PREFIX: inboxPrefix(role)! } : {}),
      TEMPORAL_ADDRESS: `${at.temporal.host}:${at.temporal.port}`,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: pki.ca,
      TEMPORAL_TLS_CLIENT_CERT_PATH: client.cert,
      TEMPORAL_TLS_CLIENT_KEY_PATH: client.key,
      ...(loopbackIp(at.temporal.host) ? { TEMPORAL_TLS_SERVER_NAME: 'localhost' } : {}),
      DALLE_SAMPLER_ADDRESS: at.sampler,
    };
    if (role === 'worker') vars.NATS_RANK_SIGNING_KEY = accounts.rankSigner;
    if (role === 'sampler') {
      Object.assign(vars, {
        DALLE_SAMPLER_TLS_CERT: pki.server.cert,
        DALLE_SAMPLER_TLS_KEY: pki.server.key,
        DALLE_SAMPLER_TLS_CLIENT_CA: pki.ca,
        DALLE_SAMPLER_TOKEN: token,
      });
    }
    if (role === 'cli' || role === 'admin') {
      Object.assign(vars, {
        DALLE_SAMPLER_TLS_CA: pki.ca,
        DALLE_SAMPLER_TLS_CLIENT_CERT: client.cert,
        DALLE_SAMPLER_TLS_CLIENT_KEY: client.key,
        DALLE_SAMPLER_TOKEN: token,
        ...(loopbackIp(samplerHost) ? { DALLE_SAMPLER_TLS_SERVER_NAME: 'localhost' } : {}),
      });
    }
    const lines = Object.entries(vars).map(([k, v]) => `export ${k}='${v.replace(/'/g, `'\\''`)}'`);
    writeSecret(envFile(role), `# dalle ${role}: . ${envFile(role)}\n${lines.join('\n')}\n`);
  }
  writeFileSync(join(dir, 'stack.json'), JSON.stringify(at, null, 2));
  return {
    ...at,
    dir,
    natsConfig,
    serverCert: pki.server.cert,
    serverKey: pki.server.key,
    ca: pki.ca,
    envFile,
  };
}

/** The variables of a role's env file, as an object (for child processes and tests). */
export function readRoleEnv(home: string, role: Role): Record<string, string> {
  const out: Record<string, string> = {};
  const text = readFileSync(join(secureDir(home), `${role}.env`), 'utf8');
  for (const line of text.split('\n')) {
    const m = /^export ([A-Z0-9_]+)='(.*)'$/.exec(line);
    if (m) out[m[1]!] = m[2]!.replace(/'\\''/g, "'");
  }
  return out;
}
