// A small private CA for a secured stack, made with `openssl` (present on every machine kind we run on):
// one CA, one server certificate for every service endpoint (NATS, Temporal, sampler), and client
// certificates per role for mutual TLS. ECDSA P-256, SHA-256. Keys are written 0600 and never printed.
// Idempotent: existing files are kept, so restarting a secured stack does not invalidate its clients.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';

export interface CertFiles {
  cert: string;
  key: string;
}

export interface Pki {
  dir: string;
  ca: string;
  server: CertFiles;
  client: (name: string) => CertFiles;
}

/** `openssl` failed; its stderr says why (it never contains key material). */
export class PkiError extends Error {
  override name = 'PkiError';
  readonly fatal = true;
  constructor(
    readonly step: string,
    readonly stderr: string,
  ) {
    super(`openssl ${step} failed: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  }
}

function openssl(step: string, args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    throw new PkiError(step, err.stderr?.toString() || err.message);
  }
}

function newKey(path: string): void {
  openssl('genpkey', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path]);
  chmodSync(path, 0o600);
}

/** A leaf certificate signed by the CA: `usage` serverAuth (with SANs) or clientAuth (CN = role). */
function issue(dir: string, name: string, usage: 'serverAuth' | 'clientAuth', sans: string[]): CertFiles {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) };
  // Reissued only when the names it must cover changed (a new host), so clients keep working otherwise.
  const ext = join(dir, `${name}.ext`);
  const lines = [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    `extendedKeyUsage=${usage}`,
    ...(sans.length ? [`subjectAltName=${sans.join(',')}`] : []),
  ];
  const wanted = lines.join('\n') + '\n';
  const same = existsSync(ext) && readFileSync(ext, 'utf8') === wanted;
  if (same && existsSync(files.cert) && existsSync(files.key)) return files;
  if (!existsSync(files.key)) newKey(files.key);
  const csr = join(dir, `${name}.csr`);
  openssl('req', ['req', '-new', '-key', files.key, '-subj', `/CN=${name}/O=dalle-cluster`, '-out', csr]);
  writeFileSync(ext, wanted);
  openssl('x509', [
    'x509',
    '-req',
    '-in',
    csr,
    '-CA',
    join(dir, 'ca.crt'),
    '-CAkey',
    join(dir, 'ca.key'),
    '-CAcreateserial',
    '-days',
    '825',
    '-sha256',
    '-extfile',
    ext,
    '-out',
    files.cert,
  ]);
  return files;
}

/** The CA and server certificate under `dir` (made once), valid for `hosts` (names or IPs) besides
 *  localhost and 127.0.0.1. */
export function ensurePki(dir: string, hosts: string[] = []): Pki {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = join(dir, 'ca.crt');
  if (!existsSync(ca) || !existsSync(join(dir, 'ca.key'))) {
    newKey(join(dir, 'ca.key'));
    openssl('req (CA)', [
      'req',
      '-x509',
      '-new',
      '-key',
      join(dir, 'ca.key'),
      '-sha256',
      '-days',
      '3650',
      '-subj',
      '/CN=dalle-cluster local CA/O=dalle-cluster',
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-out',
      ca,
    ]);
  }
  const names = [...new Set(['localhost', '127.0.0.1', ...hosts.filter(Boolean)])];
  const sans = names.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`));
  const server = issue(dir, 'server', 'serverAuth', sans);
  return { dir, ca, server, client: (name) => issue(dir, `client-${name}`, 'clientAuth', []) };
}
