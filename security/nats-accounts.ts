// NATS decentralized auth (operator → account → users, all JWTs) for a secured cluster, and the
// permissions each role gets. One account, DALLE, with JetStream; its users:
//
//   worker   checkpoints, run manifests and model publishing (JetStream API, the four buckets); no
//            collective subjects at all: ranks talk over per-run connections (below)
//   sampler  read-only on the models buckets: it can watch and load models, never publish one
//   cli      read-only on runs and models (`dalle status`, `dalle eval`)
//   admin    everything in the account (bucket creation, health checks, operators)
//
// Per-run permissions: the account has a *scoped signing key* (role `rank`) whose template lets a user
// named <run> publish and subscribe only on `dalle.<run>.>` and its own inbox `_INBOX_<run>.>`. A worker
// holds that key's seed and, for each rank it runs, mints a short-lived user named after the run: the
// rank's connection cannot publish on any other run's subjects, read other runs' replies, or touch
// JetStream. Whatever the worker's key signs, the server applies the template, so even a stolen key only
// yields rank-shaped users. Each role also has its own inbox prefix, so no role can read another's replies.
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { encodeAccount, encodeOperator, encodeUser, fmtCreds, newScopedSigner } from '@nats-io/jwt';
import { createAccount, createOperator, createUser, fromSeed, type KeyPair } from '@nats-io/nkeys';
import { seedOf } from './settings.ts';

export const ACCOUNT_NAME = 'DALLE';
export const RANK_ROLE = 'rank';
export const ROLES = ['worker', 'sampler', 'cli', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** The inbox prefix of a role's connections (their replies are readable by that role only). */
export function inboxPrefix(role: Role): string | undefined {
  return role === 'admin' ? undefined : `_INBOX_${role}`;
}

/** The inbox prefix of a run's rank connections. */
export function rankInboxPrefix(runId: string): string {
  return `_INBOX_${runId}`;
}

/** What a user named after the run may do (the `rank` scoped signing key's template). */
export const rankTemplate = {
  pub: { allow: ['dalle.{{name()}}.>', '_INBOX_{{name()}}.>'] },
  sub: { allow: ['dalle.{{name()}}.>', '_INBOX_{{name()}}.>'] },
};

/** Read-only JetStream access to one stream (info, direct/message get, ordered consumers for watch/get). */
function readStream(stream: string): string[] {
  return [
    `$JS.API.STREAM.INFO.${stream}`,
    `$JS.API.STREAM.MSG.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}`,
    `$JS.API.DIRECT.GET.${stream}.>`,
    `$JS.API.CONSUMER.CREATE.${stream}`,
    `$JS.API.CONSUMER.CREATE.${stream}.>`,
    `$JS.API.CONSUMER.INFO.${stream}.>`,
    `$JS.API.CONSUMER.DELETE.${stream}.>`,
    `$JS.API.CONSUMER.MSG.NEXT.${stream}.>`,
    `$JS.FC.${stream}.>`,
    `$JS.ACK.${stream}.>`,
  ];
}

/** The subject workers answer presence requests on (activities/presence.ts's PRESENCE_SUBJECT). */
export const WORKER_PRESENCE_SUBJECT = 'dalle.workers.presence';

/** Permissions of each role (JWT user claims). */
export function rolePermissions(role: Role): { pub?: { allow: string[] }; sub?: { allow: string[] } } {
  const inbox = `${inboxPrefix(role)}.>`;
  switch (role) {
    case 'worker':
      return {
        pub: {
          allow: [
            '$JS.API.>',
            '$JS.ACK.>',
            '$JS.FC.>',
            '$KV.dalle-runs.>',
            '$KV.dalle-models.>',
            '$O.dalle-checkpoints.>',
            '$O.dalle-models.>',
            // Elastic runs ask every worker who is there (activities/presence.ts); workers answer into
            // the asking worker's inbox.
            WORKER_PRESENCE_SUBJECT,
            inbox,
          ],
        },
        sub: { allow: [inbox, WORKER_PRESENCE_SUBJECT] },
      };
    case 'sampler':
      return {
        pub: {
          allow: [
            '$JS.API.INFO',
            '$JS.API.STREAM.NAMES',
            ...readStream('KV_dalle-models'),
            ...readStream('OBJ_dalle-models'),
          ],
        },
        sub: { allow: [inbox] },
      };
    case 'cli':
      return {
        pub: {
          allow: [
            '$JS.API.INFO',
            '$JS.API.STREAM.NAMES',
            ...['KV_dalle-runs', 'OBJ_dalle-checkpoints', 'KV_dalle-models', 'OBJ_dalle-models'].flatMap(
              readStream,
            ),
          ],
        },
        sub: { allow: [inbox] },
      };
    case 'admin':
      return {};
  }
}

export interface NatsAccounts {
  dir: string;
  /** nats-server config lines: operator, system account, resolver with both account JWTs preloaded. */
  serverConfig: string;
  /** Path of each role's .creds file. */
  creds: Record<Role, string>;
  /** Seed file of the `rank` scoped signing key (for workers: NATS_RANK_SIGNING_KEY). */
  rankSigner: string;
  accountPublicKey: string;
}

function keyFile(dir: string, name: string, make: () => KeyPair): KeyPair {
  const path = join(dir, `${name}.nk`);
  if (existsSync(path)) return fromSeed(seedOf(readFileSync(path), path));
  const kp = make();
  writeFileSync(path, new TextDecoder().decode(kp.getSeed()) + '\n', { mode: 0o600 });
  chmodSync(path, 0o600);
  return kp;
}

/** Operator, accounts, the rank signing key and one user per role under `dir`; keys are made once and
 *  kept, JWTs are re-encoded each time (cheap, stateless). */
export async function ensureNatsAccounts(dir: string): Promise<NatsAccounts> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const operator = keyFile(dir, 'operator', createOperator);
  const system = keyFile(dir, 'system-account', createAccount);
  const account = keyFile(dir, 'account', createAccount);
  const rankKey = keyFile(dir, 'rank-signer', createAccount);
  const operatorJwt = await encodeOperator('dalle', operator, { system_account: system.getPublicKey() });
  const systemJwt = await encodeAccount('SYS', system, {}, { signer: operator });
  const accountJwt = await encodeAccount(
    ACCOUNT_NAME,
    account,
    {
      limits: {
        subs: -1,
        data: -1,
        payload: -1,
        conn: -1,
        imports: -1,
        exports: -1,
        wildcards: true,
        leaf: -1,
        mem_storage: -1,
        disk_storage: -1,
        streams: -1,
        consumer: -1,
      },
      signing_keys: [newScopedSigner(rankKey, RANK_ROLE, rankTemplate)],
    },
    { signer: operator },
  );
  // Users are issued afresh each time (the account key is what the server trusts, so credentials issued
  // earlier stay valid for processes still running): a changed role permission reaches new processes.
  const creds = {} as Record<Role, string>;
  for (const role of ROLES) {
    const path = join(dir, `${role}.creds`);
    creds[role] = path;
    const user = createUser();
    const jwt = await encodeUser(role, user, account, rolePermissions(role));
    writeFileSync(path, fmtCreds(jwt, user), { mode: 0o600 });
  }
  const serverConfig = [
    `operator: ${operatorJwt}`,
    `system_account: ${system.getPublicKey()}`,
    'resolver: MEMORY',
    'resolver_preload: {',
    `  ${system.getPublicKey()}: ${systemJwt}`,
    `  ${account.getPublicKey()}: ${accountJwt}`,
    '}',
  ].join('\n');
  return {
    dir,
    serverConfig,
    creds,
    rankSigner: join(dir, 'rank-signer.nk'),
    accountPublicKey: account.getPublicKey(),
  };
}
