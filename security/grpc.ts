// The sampler's gRPC security, both ends: server credentials (TLS, optionally requiring client
// certificates), a bearer-token check on every call but health checks, and the matching client
// credentials + token metadata for `dalle generate`, `dalle eval`, benchmarks and tests.
import { timingSafeEqual, createHash } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import {
  samplerClientSecurity,
  samplerServerSecurity,
  type SamplerClientSecurity,
  type SamplerServerSecurity,
} from './settings.ts';

/** Health checks stay open: load balancers and probes cannot send a token. */
const OPEN_PATHS = new Set(['/grpc.health.v1.Health/Check', '/grpc.health.v1.Health/Watch']);

export function samplerServerCredentials(
  s: SamplerServerSecurity = samplerServerSecurity(),
): grpc.ServerCredentials {
  if (!s.tls) return grpc.ServerCredentials.createInsecure();
  return grpc.ServerCredentials.createSsl(
    s.tls.clientCa ?? null,
    [{ cert_chain: s.tls.cert, private_key: s.tls.key }],
    // With a client CA, a client without a certificate it signed is refused during the handshake.
    s.tls.clientCa !== undefined,
  );
}

/** Compares in constant time (a timing side channel must not leak the token byte by byte). */
function sameToken(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** Server interceptor: calls without `authorization: Bearer <token>` end UNAUTHENTICATED before any
 *  handler (or other interceptor) sees them. A no-op when no token is configured. */
export function samplerTokenCheck(
  token: string | undefined = samplerServerSecurity().token,
): grpc.ServerInterceptor {
  return (descriptor, call) => {
    if (!token || OPEN_PATHS.has(descriptor.path)) return new grpc.ServerInterceptingCall(call);
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMd) => {
            const header = String(metadata.get('authorization')[0] ?? '');
            const m = /^Bearer (.+)$/i.exec(header);
            if (m && sameToken(m[1]!.trim(), token)) return nextMd(metadata);
            call.sendStatus({
              code: grpc.status.UNAUTHENTICATED,
              details: header
                ? 'the bearer token in metadata `authorization` is not valid'
                : 'this sampler needs metadata `authorization: Bearer <token>` (DALLE_SAMPLER_TOKEN)',
              metadata: new grpc.Metadata(),
            });
          },
        });
      },
    });
  };
}

/** Channel credentials and options for a sampler client, from the environment (or `s`). */
export function samplerClientCredentials(s: SamplerClientSecurity = samplerClientSecurity()): {
  credentials: grpc.ChannelCredentials;
  options: grpc.ChannelOptions;
  interceptors: grpc.Interceptor[];
} {
  const credentials = s.tls
    ? grpc.credentials.createSsl(s.tls.ca ?? null, s.tls.key ?? null, s.tls.cert ?? null)
    : grpc.credentials.createInsecure();
  const options: grpc.ChannelOptions = s.tls?.serverName
    ? { 'grpc.ssl_target_name_override': s.tls.serverName, 'grpc.default_authority': s.tls.serverName }
    : {};
  return { credentials, options, interceptors: s.token ? [bearerToken(s.token)] : [] };
}

/** Client interceptor adding `authorization: Bearer <token>` to every call. (Call credentials would refuse
 *  a plaintext channel; the sampler decides whether plaintext is acceptable, not the client library.) */
export function bearerToken(token: string): grpc.Interceptor {
  return (options, nextCall) =>
    new grpc.InterceptingCall(nextCall(options), {
      start: (metadata, listener, next) => {
        metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}
