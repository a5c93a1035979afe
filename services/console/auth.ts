// Who may do what. Run controls (pause, resume, setWorldSize) always need the console's bearer token; when
// the console listens beyond loopback every API call needs it. On loopback, requests must also name a
// loopback host, so a web page elsewhere cannot reach the console through DNS rebinding.
import { timingSafeEqual, createHash } from 'node:crypto';
import type { MiddlewareHandler } from 'hono';
import { HttpError } from './http-error.ts';
import { isLoopback } from './env.ts';

const digest = (s: string) => createHash('sha256').update(s).digest();

/** True when the request carries `Authorization: Bearer <token>` (compared in constant time). */
export function hasToken(header: string | undefined, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return !!m && timingSafeEqual(digest(m[1]!), digest(token));
}

/** Rejects a request without the token: 401 when none was sent, 403 when a wrong one was. */
export function requireToken(token: string): MiddlewareHandler {
  return async (c, next) => {
    const header = c.req.header('authorization');
    if (!hasToken(header, token)) {
      c.header('WWW-Authenticate', 'Bearer realm="dalle-console"');
      throw header
        ? new HttpError(403, 'forbidden', 'the bearer token is not the console token')
        : new HttpError(
            401,
            'unauthorized',
            'this needs the console token: Authorization: Bearer <token> (printed at start, or $DALLE_HOME/console.token)',
          );
    }
    await next();
  };
}

/** On a loopback console: a Host header that does not name a loopback host is refused. */
export function loopbackHostOnly(): MiddlewareHandler {
  return async (c, next) => {
    const host = c.req.header('host') ?? '';
    const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!;
    if (!isLoopback(name)) throw new HttpError(403, 'forbidden', `host '${host}' is not a loopback name`);
    await next();
  };
}
