// The collective's data plane: a second, minimal NATS client (core protocol, headers, no reconnect) that
// carries only the all-reduce's chunks, built so that moving a byte costs the kernel's copy and little else.
//
// Why not nats.js for the chunks: profiles of `dalle bench allreduce` at W = 2 put most of a rank's CPU in
// the client's buffers: every publish is concatenated into an outbound buffer before the socket write, and
// a message larger than one socket read is reassembled in a buffer that grows by doubling (two or three
// copies and as many large allocations per 1 MiB chunk), plus one fresh 64 KiB buffer per read; the garbage
// collector then runs on that external memory. Here:
//   send     HPUB's protocol line and header block go in one small buffer; the payload (a view of the
//            caller's Float32Array) is handed to the socket as is (writev: no copy in user space). The
//            caller keeps it unchanged until `drained()` says the kernel has it.
//   receive  the socket reads into one preallocated buffer (`onread`); a payload is copied once, into a
//            reassembly buffer that is reused for every message, and handed to the subscriber as a
//            transient view: valid during the callback only, copied by whoever keeps it.
// The wire format is plain NATS (HPUB/HMSG with a NATS/1.0 header block): any NATS client can publish or
// subscribe to the same subjects, so the message checks see forged chunks exactly as before.
//
// It opens only where it can prove it speaks for the same identity as the group's nats.js connection
// (plain TCP, that connection's authenticator); with TLS it does not open and the group keeps its chunks
// on nats.js (see `openDataPlane`).
import { connect as netConnect, type Socket } from 'node:net';
import type { ConnectionOptions, NatsConnection } from 'nats';

const CRLF = Buffer.from('\r\n');
const READ_BYTES = 256 << 10;

/** Header fields of a message, as the NATS header block carries them. */
export type HeaderFields = readonly (readonly [string, string])[];

/** What a subscriber gets: the subject, a header lookup and the payload (see `transient`). */
export type ChunkHandler = (
  subject: string,
  header: (key: string) => string | undefined,
  data: Uint8Array,
  /** true: `data` is reused after the callback returns; copy what you keep. */
  transient: boolean,
) => void;

/** The connection went away; the group moves its chunks back to nats.js (resends recover what was lost). */
export class DataPlaneClosedError extends Error {
  override name = 'DataPlaneClosedError';
  constructor(readonly detail: string) {
    super(`collective data plane closed: ${detail}`);
  }
}

interface Info {
  max_payload?: number;
  nonce?: string;
  tls_required?: boolean;
  headers?: boolean;
}

/** Opens a data plane beside `nc` (same server, same credentials), or returns undefined when that cannot
 *  be done faithfully (TLS, no server address, a server without headers): the caller then uses nc. */
export async function openDataPlane(nc: NatsConnection, name: string): Promise<DataPlane | undefined> {
  // nats.js keeps its parsed options (with the authenticator it built from user/pass/token/nkey/creds) on
  // the connection object; the public interface does not declare them.
  const opts = (nc as unknown as { options?: ConnectionOptions }).options;
  const server = nc.getServer();
  const hostPort = /^\[?([^\]]+?)\]?:(\d+)$/.exec(server);
  if (!opts || opts.tls || nc.info?.tls_required || !hostPort) return undefined;
  try {
    return await DataPlane.connect(hostPort[1]!, Number(hostPort[2]), opts, name);
  } catch {
    return undefined; // nats.js works, so the group does too: on the slower path
  }
}

export class DataPlane {
  private readonly handlers = new Map<number, ChunkHandler>();
  private nextSid = 1;
  private info: Info = {};
  private closedWith?: Error;
  private readonly pongs: (() => void)[] = [];
  private lastWrite?: Promise<void>;
  onClose?: (e: Error) => void;
  // parser state
  private lineLen = 0;
  private lineBuf = new Uint8Array(4096);
  private want = 0; // payload bytes (+2 for CRLF) still expected; 0: reading a control line
  private msg?: { subject: string; sid: number; hdr: number; size: number };
  private body = new Uint8Array(1 << 20);
  private bodyAt = 0;

  private constructor(private readonly socket: Socket) {}

  static async connect(
    host: string,
    port: number,
    opts: ConnectionOptions,
    name: string,
  ): Promise<DataPlane> {
    const holder: { dp?: DataPlane } = {};
    const readBuf = Buffer.allocUnsafe(READ_BYTES);
    const socket = netConnect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: readBuf,
        callback: (n: number, buf: Uint8Array) => {
          holder.dp!.onRead(buf, n);
          return true; // false would pause the socket
        },
      },
    });
    const dp = new DataPlane(socket);
    holder.dp = dp;
    const ready = new Promise<void>((resolve, reject) => {
      dp.greeted = (info) => {
        if (info.tls_required || info.headers === false) {
          reject(new DataPlaneClosedError('the server requires TLS or lacks headers'));
          return;
        }
        const auth = typeof opts.authenticator === 'function' ? (opts.authenticator(info.nonce) ?? {}) : {};
        const hello = {
          verbose: false,
          pedantic: false,
          lang: 'dalle-data-plane',
          version: '1',
          protocol: 1,
          headers: true,
          no_responders: true,
          echo: false,
          name,
          ...auth,
        };
        socket.write(`CONNECT ${JSON.stringify(hello)}\r\nPING\r\n`);
        dp.pongs.push(resolve);
      };
      socket.once('error', reject);
      dp.onClose = reject;
    });
    socket.on('error', (e) => dp.closed(e));
    socket.on('close', () => dp.closed(new DataPlaneClosedError('socket closed')));
    try {
      await withTimeout(ready, opts.timeout ?? 20_000);
    } catch (e) {
      socket.destroy();
      throw e;
    }
    dp.onClose = undefined;
    return dp;
  }
  private greeted?: (info: Info) => void;

  get maxPayload(): number {
    return this.info.max_payload ?? 1 << 20;
  }

  get isClosed(): boolean {
    return this.closedWith !== undefined;
  }

  subscribe(subject: string, handler: ChunkHandler): number {
    const sid = this.nextSid++;
    this.handlers.set(sid, handler);
    this.write(`SUB ${subject} ${sid}\r\n`);
    return sid;
  }

  unsubscribe(sid: number): void {
    if (this.handlers.delete(sid) && !this.isClosed) this.write(`UNSUB ${sid}\r\n`);
  }

  /** Publishes `payload` with `headers`. The payload is not copied: it must not change until `drained()`. */
  publish(subject: string, headers: HeaderFields, payload: Uint8Array): void {
    if (this.closedWith) throw this.closedWith;
    let hdr = 'NATS/1.0\r\n';
    for (const [k, v] of headers) hdr += `${k}: ${v}\r\n`;
    hdr += '\r\n';
    const hdrLen = Buffer.byteLength(hdr);
    const s = this.socket;
    s.cork();
    s.write(`HPUB ${subject} ${hdrLen} ${hdrLen + payload.byteLength}\r\n${hdr}`);
    s.write(payload);
    this.lastWrite = new Promise<void>((resolve) => s.write(CRLF, () => resolve()));
    s.uncork();
  }

  /** Resolves when everything published so far has been handed to the kernel (payloads may be reused). */
  drained(): Promise<void> {
    return this.closedWith || !this.lastWrite || this.socket.writableLength === 0
      ? Promise.resolve()
      : this.lastWrite;
  }

  /** Round trip to the server: everything sent before has been processed by it. */
  flush(): Promise<void> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve) => {
      this.pongs.push(resolve);
      this.write('PING\r\n');
    });
  }

  close(): void {
    if (this.closedWith) return;
    this.closedWith = new DataPlaneClosedError('closed by this process');
    this.handlers.clear();
    this.socket.end();
  }

  private write(s: string): void {
    this.socket.write(s);
  }

  private closed(e: Error): void {
    if (this.closedWith) return;
    this.closedWith = e instanceof DataPlaneClosedError ? e : new DataPlaneClosedError(e.message);
    this.socket.destroy();
    for (const p of this.pongs.splice(0)) p(); // nobody waits forever; the next publish throws
    this.onClose?.(this.closedWith);
  }

  // ---- receive -------------------------------------------------------------------------------------

  private onRead(buf: Uint8Array, n: number): void {
    try {
      let i = 0;
      while (i < n) i = this.want ? this.readBody(buf, i, n) : this.readLine(buf, i, n);
    } catch (e) {
      this.closed(e as Error);
    }
  }

  private readLine(buf: Uint8Array, i: number, n: number): number {
    const nl = buf.indexOf(10, i);
    const end = nl < 0 || nl >= n ? n : nl;
    if (this.lineLen + (end - i) > this.lineBuf.length) {
      const grown = new Uint8Array(2 * (this.lineLen + (end - i))); // an INFO line can be long
      grown.set(this.lineBuf.subarray(0, this.lineLen));
      this.lineBuf = grown;
    }
    this.lineBuf.set(buf.subarray(i, end), this.lineLen);
    this.lineLen += end - i;
    if (end === n) return n;
    const line = Buffer.from(this.lineBuf.buffer, 0, this.lineLen).toString('latin1').trimEnd();
    this.lineLen = 0;
    this.onLine(line);
    return end + 1;
  }

  private onLine(l: string): void {
    const sp = l.indexOf(' ');
    const op = (sp < 0 ? l : l.slice(0, sp)).toUpperCase();
    if (op === 'HMSG' || op === 'MSG') {
      const a = l.split(' ');
      // MSG subject sid [reply] size · HMSG subject sid [reply] hdrSize totalSize
      const hasReply = a.length === (op === 'HMSG' ? 6 : 5);
      const size = Number(a[a.length - 1]);
      const hdr = op === 'HMSG' ? Number(a[a.length - 2]) : 0;
      if (
        !Number.isInteger(size) ||
        !Number.isInteger(hdr) ||
        hdr > size ||
        a.length < 4 + (hasReply ? 1 : 0)
      )
        throw new DataPlaneClosedError(`unreadable message line '${l.slice(0, 200)}'`);
      this.msg = { subject: a[1]!, sid: Number(a[2]), hdr, size };
      if (this.body.byteLength < size) this.body = new Uint8Array(Math.max(size, this.body.byteLength * 2));
      this.bodyAt = 0;
      this.want = size + 2;
    } else if (op === 'PING') this.write('PONG\r\n');
    else if (op === 'PONG') this.pongs.shift()?.();
    else if (op === 'INFO') {
      this.info = JSON.parse(l.slice(sp + 1)) as Info;
      const g = this.greeted;
      this.greeted = undefined;
      g?.(this.info);
    } else if (op === '-ERR') throw new DataPlaneClosedError(`server said ${l.slice(sp + 1)}`);
  }

  private readBody(buf: Uint8Array, i: number, n: number): number {
    const m = this.msg!;
    const take = Math.min(n - i, this.want);
    const payloadLeft = Math.max(0, m.size - this.bodyAt);
    const copy = Math.min(take, payloadLeft);
    if (copy > 0) this.body.set(buf.subarray(i, i + copy), this.bodyAt);
    this.bodyAt += copy;
    this.want -= take;
    if (this.want === 0) {
      this.msg = undefined;
      this.dispatch(m);
    }
    return i + take;
  }

  private dispatch(m: { subject: string; sid: number; hdr: number; size: number }): void {
    const h = this.handlers.get(m.sid);
    if (!h) return;
    const fields = new Map<string, string>();
    if (m.hdr > 0) {
      const text = Buffer.from(this.body.buffer, this.body.byteOffset, m.hdr).toString('latin1');
      for (const line of text.split('\r\n').slice(1)) {
        const c = line.indexOf(':');
        if (c > 0) fields.set(line.slice(0, c).trim().toLowerCase(), line.slice(c + 1).trim());
      }
    }
    h(m.subject, (k) => fields.get(k.toLowerCase()), this.body.subarray(m.hdr, m.size), true);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>(
    (_, reject) => (t = setTimeout(() => reject(new DataPlaneClosedError(`no answer in ${ms} ms`)), ms)),
  );
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}
