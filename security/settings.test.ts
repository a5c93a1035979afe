import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createUser } from '@nats-io/nkeys';
import { describeNatsAuth, natsOptions, redactUrl } from './nats.ts';
import {
  natsSecurity,
  samplerClientSecurity,
  samplerServerSecurity,
  SecurityConfigError,
  temporalSecurity,
} from './settings.ts';
import { describeTemporalAuth } from './temporal.ts';

const dir = mkdtempSync(join(tmpdir(), 'settings-test-'));
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};

test('security: NATS_URL userinfo becomes credentials (nats.js would ignore it) and is never printed', () => {
  const s = natsSecurity({ NATS_URL: 'nats://alice:s3cr%2Ft@10.0.0.5:4222' });
  assert.equal(s.url, 'nats://10.0.0.5:4222');
  assert.deepEqual(s.auth, { kind: 'user', user: 'alice', password: 's3cr/t', from: 'NATS_URL' });
  assert.ok(natsOptions(s).authenticator, 'an authenticator is built');
  const t = natsSecurity({ NATS_URL: 'tls://tok123@nats:4222' });
  assert.equal(t.auth.kind, 'token');
  assert.ok(t.tls, 'tls:// turns TLS on');
  for (const shown of [describeNatsAuth(s), describeNatsAuth(t), redactUrl('nats://alice:s3cr@h:1')]) {
    assert.doesNotMatch(shown, /s3cr|tok123/);
  }
  assert.equal(redactUrl('nats://alice:s3cr@h:1'), 'nats://alice:***@h:1');
  assert.equal(redactUrl('nats://tok123@h:1'), 'nats://***@h:1');
  assert.equal(redactUrl('nats://h:1'), 'nats://h:1');
});

test('security: one way to authenticate to NATS; partners and files are checked, naming the variable', () => {
  const err = (env: Record<string, string>) => {
    try {
      natsSecurity(env);
    } catch (e) {
      assert.ok(e instanceof SecurityConfigError, String(e));
      return e;
    }
    assert.fail(`no error for ${JSON.stringify(env)}`);
  };
  assert.match(
    err({ NATS_TOKEN: 't', NATS_USER: 'u', NATS_PASSWORD: 'p' }).variable,
    /NATS_USER, NATS_TOKEN/,
  );
  assert.equal(err({ NATS_USER: 'u' }).variable, 'NATS_USER');
  assert.equal(err({ NATS_PASSWORD: 'p' }).variable, 'NATS_PASSWORD');
  assert.equal(err({ NATS_CERT: file('c.pem', 'x') }).variable, 'NATS_CERT');
  const missing = err({ NATS_CREDS: join(dir, 'nope.creds') });
  assert.equal(missing.variable, 'NATS_CREDS');
  assert.match(missing.message, /ENOENT/);
  assert.equal(err({ NATS_NKEY: file('bad.nk', 'not a seed') }).variable, 'NATS_NKEY');
  const seed = new TextDecoder().decode(createUser().getSeed());
  const ok = natsSecurity({ NATS_NKEY: file('u.nk', `# a comment\n${seed}\n`) });
  assert.equal(ok.auth.kind, 'nkey');
  assert.doesNotMatch(describeNatsAuth(ok), new RegExp(seed));
});

test('security: Temporal settings use the temporal CLI names; an API key or any TLS option turns TLS on', () => {
  const plain = temporalSecurity({ TEMPORAL_ADDRESS: 'h:7233', TEMPORAL_NAMESPACE: 'ns' });
  assert.equal(plain.tls, undefined);
  assert.equal(plain.namespace, 'ns');
  const key = temporalSecurity({ TEMPORAL_API_KEY: 'k-123' });
  assert.ok(key.tls);
  assert.equal(key.apiKey, 'k-123');
  assert.doesNotMatch(describeTemporalAuth(key), /k-123/);
  const ca = file('ca.pem', 'CA');
  const mtls = temporalSecurity({
    TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca,
    TEMPORAL_TLS_CLIENT_CERT_DATA: 'CERT',
    TEMPORAL_TLS_CLIENT_KEY_PATH: file('k.pem', 'KEY'),
    TEMPORAL_TLS_SERVER_NAME: 'temporal.internal',
  });
  assert.equal(mtls.tls?.serverRootCACertificate?.toString(), 'CA');
  assert.equal(mtls.tls?.clientCertPair?.crt.toString(), 'CERT');
  assert.equal(mtls.tls?.serverNameOverride, 'temporal.internal');
  assert.throws(
    () => temporalSecurity({ TEMPORAL_TLS_CLIENT_CERT_PATH: ca }),
    /TEMPORAL_TLS_CLIENT_CERT_PATH: needs its partner/,
  );
  assert.throws(
    () => temporalSecurity({ TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca, TEMPORAL_TLS_SERVER_CA_CERT_DATA: 'x' }),
    /set one of them/,
  );
  assert.throws(() => temporalSecurity({ TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'true' }), /not supported/);
  assert.throws(() => temporalSecurity({ TEMPORAL_TLS: 'maybe' }), /TEMPORAL_TLS: must be true\/false/);
});

test('security: sampler server and client settings pair up, naming the variable that lacks its partner', () => {
  const cert = file('s.crt', 'C');
  const key = file('s.key', 'K');
  assert.deepEqual(samplerServerSecurity({}), { tls: undefined, token: undefined });
  const srv = samplerServerSecurity({
    DALLE_SAMPLER_TLS_CERT: cert,
    DALLE_SAMPLER_TLS_KEY: key,
    DALLE_SAMPLER_TLS_CLIENT_CA: cert,
    DALLE_SAMPLER_TOKEN: 'tkn',
  });
  assert.ok(srv.tls?.clientCa);
  assert.equal(srv.token, 'tkn');
  assert.throws(() => samplerServerSecurity({ DALLE_SAMPLER_TLS_KEY: key }), /DALLE_SAMPLER_TLS_KEY: needs/);
  assert.throws(() => samplerServerSecurity({ DALLE_SAMPLER_TLS_CLIENT_CA: cert }), /mutual TLS needs/);
  assert.equal(samplerClientSecurity({}).tls, undefined);
  assert.ok(samplerClientSecurity({ DALLE_SAMPLER_TLS: '1' }).tls, 'system CAs');
  assert.throws(
    () => samplerClientSecurity({ DALLE_SAMPLER_TLS_CLIENT_CERT: cert }),
    /DALLE_SAMPLER_TLS_CLIENT_CERT: needs/,
  );
});
