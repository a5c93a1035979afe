// A rank's connection for the collective. On a secured cluster (NATS_RANK_SIGNING_KEY set) each rank gets
// its own connection as a user named after its run, minted here with the account's `rank` scoped signing
// key: the server confines it to `dalle.<run>.>` and its own inbox (nats-accounts.ts). Without that key
// the rank shares the process's connection, as on a laptop.
import { readFileSync } from 'node:fs';
import { decode as decodeJwt, encodeUser, fmtCreds } from '@nats-io/jwt';
import { createUser, fromSeed } from '@nats-io/nkeys';
import { credsAuthenticator, type NatsConnection } from 'nats';
import { rankInboxPrefix } from './nats-accounts.ts';
import { connectNats } from './nats.ts';
import { natsSecurity, SecurityConfigError, seedOf, type NatsSecurity } from './settings.ts';

export interface RankConnection {
  nc: NatsConnection;
  /** True when the connection is confined to the run's subjects (a minted per-run user). */
  scoped: boolean;
  /** Closes a per-run connection; leaves a shared one open. */
  close(): Promise<void>;
}

/** A minted user lives this long: longer than any segment, short enough that a leaked one dies. */
const RANK_CREDENTIAL_TTL_S = 7 * 24 * 3600;

/** The account a user's .creds file belongs to (its issuer, or issuer_account for a signing key). */
function accountOf(s: NatsSecurity): string {
  if (s.auth.kind !== 'creds')
    throw new SecurityConfigError(
      'NATS_RANK_SIGNING_KEY',
      'per-run credentials need the worker to connect with NATS_CREDS (a user of the same account)',
    );
  const jwt = /-----BEGIN NATS USER JWT-----\s*([^\s-][^\s]*)\s*------END/.exec(
    new TextDecoder().decode(s.auth.creds),
  )?.[1];
  if (!jwt) throw new SecurityConfigError('NATS_CREDS', 'holds no user JWT');
  const claims = decodeJwt<{ issuer_account?: string }>(jwt);
  return claims.nats.issuer_account ?? claims.iss;
}

/** The .creds bytes of a new user named `runId`, signed by the rank signing key (scoped: the server
 *  applies the rank template, whatever else the JWT says). */
export async function mintRankCredentials(
  runId: string,
  s: NatsSecurity = natsSecurity(),
): Promise<Uint8Array> {
  if (!s.rankSignerFile) throw new SecurityConfigError('NATS_RANK_SIGNING_KEY', 'is not set');
  const signer = fromSeed(seedOf(readFileSync(s.rankSignerFile), 'NATS_RANK_SIGNING_KEY'));
  const user = createUser();
  const jwt = await encodeUser(
    runId,
    user,
    signer,
    { issuer_account: accountOf(s) },
    { scopedUser: true, exp: Math.floor(Date.now() / 1000) + RANK_CREDENTIAL_TTL_S },
  );
  return fmtCreds(jwt, user);
}

/** The connection rank activities of `runId` use for their group. */
export async function rankConnection(
  shared: NatsConnection,
  runId: string,
  s: NatsSecurity = natsSecurity(),
): Promise<RankConnection> {
  if (!s.rankSignerFile) return { nc: shared, scoped: false, close: async () => undefined };
  const creds = await mintRankCredentials(runId, s);
  const nc = await connectNats(
    {
      authenticator: credsAuthenticator(creds),
      inboxPrefix: rankInboxPrefix(runId),
      name: `dalle-rank-${runId}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 500,
    },
    { ...s, auth: { kind: 'creds', creds, from: 'per-run credentials' } },
  );
  return { nc, scoped: true, close: () => nc.drain().catch(() => undefined) };
}
