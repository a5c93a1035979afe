// Where the console listens and how it protects itself, from `DALLE_CONSOLE_*` variables and flags, validated
// with zod so that a bad value stops the process with the variable's name.
//
//   DALLE_CONSOLE_ADDRESS     host:port to listen on (default 127.0.0.1:8090: loopback only)
//   DALLE_CONSOLE_TOKEN       bearer token for run controls (every API call too when not on loopback)
//   DALLE_CONSOLE_TOKEN_FILE  a file holding that token (one line)
//   DALLE_CONSOLE_TLS_CERT    PEM certificate (with DALLE_CONSOLE_TLS_KEY: serve HTTPS)
//   DALLE_CONSOLE_TLS_KEY     PEM private key
//   DALLE_CONSOLE_TEMPORAL_UI base URL of the Temporal UI for run links (default: the dev server's UI port)
//   DALLE_CONSOLE_TRACE_URL   trace link with {traceId} (default Jaeger: http://127.0.0.1:16686/trace/{traceId})
// Without a token the console makes one per start, writes it to $DALLE_HOME/console.token (mode 0600) and
// prints it inside the URL, as Jupyter does.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { z } from 'zod';
import { serviceEnv } from '../../infra/services.ts';

export const DEFAULT_CONSOLE_ADDRESS = '127.0.0.1:8090';

/** A console variable or flag with a value the console cannot use. */
export class ConsoleConfigError extends Error {
  override name = 'ConsoleConfigError';
  constructor(
    readonly variable: string,
    readonly reason: string,
  ) {
    super(`${variable}: ${reason}`);
  }
}

export interface ConsoleOptions {
  host: string;
  port: number;
  /** Bearer token; `generated` when the console made it. */
  token: string;
  tokenSource: 'DALLE_CONSOLE_TOKEN' | 'DALLE_CONSOLE_TOKEN_FILE' | 'generated';
  /** True when bound to a loopback address: then only run controls need the token. */
  loopback: boolean;
  tls: { cert: Buffer; key: Buffer } | undefined;
  temporalUi: string;
  traceUrl: string;
  samplerAddress: string;
}

const hostPort = z
  .string()
  .regex(/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/, 'must be host:port')
  .refine((s) => Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535, 'port must be ≤ 65535');
const url = z.url({ protocol: /^https?$/ });

function parseVar<T>(name: string, schema: z.ZodType<T>, value: unknown): T {
  const r = schema.safeParse(value);
  if (!r.success) throw new ConsoleConfigError(name, r.error.issues[0]!.message);
  return r.data;
}

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

function readFile(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConsoleConfigError(variable, `cannot read ${path}: ${(e as Error).message}`);
  }
}

function token(env: NodeJS.ProcessEnv, home: string): Pick<ConsoleOptions, 'token' | 'tokenSource'> {
  const tokenRule = z
    .string()
    .regex(/^[\x21-\x7e]{16,}$/, 'must be at least 16 printable characters, no spaces');
  if (env.DALLE_CONSOLE_TOKEN)
    return {
      token: parseVar('DALLE_CONSOLE_TOKEN', tokenRule, env.DALLE_CONSOLE_TOKEN),
      tokenSource: 'DALLE_CONSOLE_TOKEN',
    };
  if (env.DALLE_CONSOLE_TOKEN_FILE) {
    const text = readFile('DALLE_CONSOLE_TOKEN_FILE', env.DALLE_CONSOLE_TOKEN_FILE).toString('utf8').trim();
    return {
      token: parseVar('DALLE_CONSOLE_TOKEN_FILE', tokenRule, text),
      tokenSource: 'DALLE_CONSOLE_TOKEN_FILE',
    };
  }
  const generated = randomBytes(24).toString('base64url');
  mkdirSync(home, { recursive: true });
  const file = join(home, 'console.token');
  writeFileSync(file, `${generated}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { token: generated, tokenSource: 'generated' };
}

/** The console's options: flags win over variables, variables over defaults. */
export function consoleOptions(
  flags: { address?: string; sampler?: string } = {},
  env: NodeJS.ProcessEnv = process.env,
): ConsoleOptions {
  const address = flags.address
    ? parseVar('--address', hostPort, flags.address)
    : parseVar('DALLE_CONSOLE_ADDRESS', hostPort, env.DALLE_CONSOLE_ADDRESS || DEFAULT_CONSOLE_ADDRESS);
  const at = address.lastIndexOf(':');
  const host = address.slice(0, at).replace(/^\[|\]$/g, '');
  const port = Number(address.slice(at + 1));
  const services = serviceEnv(env);
  const [cert, key] = [env.DALLE_CONSOLE_TLS_CERT, env.DALLE_CONSOLE_TLS_KEY];
  if (!cert !== !key)
    throw new ConsoleConfigError(
      cert ? 'DALLE_CONSOLE_TLS_KEY' : 'DALLE_CONSOLE_TLS_CERT',
      'HTTPS needs both DALLE_CONSOLE_TLS_CERT and DALLE_CONSOLE_TLS_KEY',
    );
  const temporalPort = Number(services.temporalAddress.slice(services.temporalAddress.lastIndexOf(':') + 1));
  const temporalHost = services.temporalAddress.slice(0, services.temporalAddress.lastIndexOf(':'));
  const uiPort = Number(env.DALLE_TEMPORAL_UI_PORT || temporalPort + 1000);
  return {
    host,
    port,
    ...token(env, services.home),
    loopback: isLoopback(host),
    tls:
      cert && key
        ? { cert: readFile('DALLE_CONSOLE_TLS_CERT', cert), key: readFile('DALLE_CONSOLE_TLS_KEY', key) }
        : undefined,
    temporalUi: parseVar(
      'DALLE_CONSOLE_TEMPORAL_UI',
      url,
      env.DALLE_CONSOLE_TEMPORAL_UI || `http://${temporalHost}:${uiPort}`,
    ).replace(/\/$/, ''),
    traceUrl: parseVar(
      'DALLE_CONSOLE_TRACE_URL',
      z.string().includes('{traceId}', { message: 'must contain {traceId}' }).pipe(url),
      env.DALLE_CONSOLE_TRACE_URL || 'http://127.0.0.1:16686/trace/{traceId}',
    ),
    samplerAddress: flags.sampler
      ? parseVar('--sampler', hostPort, flags.sampler)
      : parseVar('DALLE_SAMPLER_ADDRESS', hostPort, env.DALLE_SAMPLER_ADDRESS || '127.0.0.1:50051'),
  };
}
