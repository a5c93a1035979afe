// Credentials and certificates for a deployed cluster (infra/compose/cluster-secure.yaml, infra/k8s/secure),
// made the way `dalle up --secure` makes a local stack's, for the deployment's host names:
//
//   pki/ca.crt, pki/server.{crt,key}      the CA; one server certificate for every host given
//   pki/client-<role>.{crt,key}           a client certificate per role (mutual TLS)
//   nats/nats-server.conf                 infra/nats/nats-server.conf, copied (it includes auth.conf)
//   nats/auth.conf                        operator and account JWTs (public)
//   nats/<role>.creds, nats/rank-signer.nk  each role's user; the seed workers mint rank users with
//   nats/*.nk (operator, accounts)        the keys everything is signed with: keep them off every machine
//                                         of the cluster (nothing mounts them)
//   sampler-token                         the sampler's bearer token
//
// Idempotent: keys and certificates are made once and kept (a new host reissues the server certificate).
import { randomBytes } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensureNatsAccounts, ROLES, type Role } from './nats-accounts.ts';
import { ensurePki } from './pki.ts';
import { packageFile } from '../config/package-root.ts';

/** The shipped server configuration (no secret in it). */
export const SHIPPED_NATS_CONFIG = packageFile('infra/nats/nats-server.conf');

export interface DeploymentFiles {
  dir: string;
  /** nats-server's: the shipped config, auth.conf beside it, and its TLS files. */
  natsServer: { config: string; auth: string; cert: string; key: string; ca: string };
  /** Per role: CA, client certificate and key, `.creds`. */
  roles: Record<Role, { ca: string; cert: string; key: string; creds: string }>;
  rankSigner: string;
  samplerToken: string;
}

export async function prepareDeployment(dir: string, hosts: string[]): Promise<DeploymentFiles> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const pki = ensurePki(join(dir, 'pki'), hosts);
  const accounts = await ensureNatsAccounts(join(dir, 'nats'));
  const config = join(accounts.dir, 'nats-server.conf');
  copyFileSync(SHIPPED_NATS_CONFIG, config);
  const auth = join(accounts.dir, 'auth.conf');
  writeFileSync(auth, accounts.serverConfig + '\n', { mode: 0o644 }); // public JWTs only
  const samplerToken = join(dir, 'sampler-token');
  if (!existsSync(samplerToken))
    writeFileSync(samplerToken, randomBytes(32).toString('hex'), { mode: 0o600 });
  const roles = {} as DeploymentFiles['roles'];
  for (const role of ROLES) roles[role] = { ca: pki.ca, ...pki.client(role), creds: accounts.creds[role] };
  return {
    dir,
    natsServer: { config, auth, cert: pki.server.cert, key: pki.server.key, ca: pki.ca },
    roles,
    rankSigner: accounts.rankSigner,
    samplerToken,
  };
}
