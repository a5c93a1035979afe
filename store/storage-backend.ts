// Two places to keep bytes with one interface: the JetStream object store + KV (a cluster), and a local
// folder (one machine). Everything above (checkpoints, model bundles) is written once against `StorageBackend`.
import { createHash } from 'node:crypto';
import {
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  watch,
  existsSync,
} from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import type { KV, NatsConnection, ObjectStore } from 'nats';

export function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** A KV value that is not JSON (or not the record its key must hold): damaged or written by someone who
 *  should not have. Readers skip it and say so; a service answers DATA_LOSS. */
export class CorruptRecordError extends Error {
  override name = 'CorruptRecordError';
  readonly corrupt = true;
  constructor(
    readonly key: string,
    readonly problem: string,
  ) {
    super(`KV record '${key}' is unusable: ${problem}`);
  }
}

/** A value and the revision it was read at (for compare-and-swap). */
export interface KvEntry {
  value: unknown;
  revision: number | string;
}

/** A bucket pair: objects (large, immutable once written) and a KV of small JSON pointers. */
export interface StorageBackend {
  readonly kind: 'nats' | 'folder';
  /** Store an object; returns its sha256. Readers never see a partial object. */
  putObject(name: string, bytes: Uint8Array): Promise<string>;
  /** The object's bytes, or undefined if absent. */
  getObject(name: string): Promise<Uint8Array | undefined>;
  deleteObject(name: string): Promise<void>;
  /** Names of objects starting with prefix. */
  listObjects(prefix: string): Promise<string[]>;
  /** The key's JSON value; throws CorruptRecordError when it is not JSON. */
  kvGet(key: string): Promise<unknown | undefined>;
  /** The value with its revision (undefined: absent or deleted). Throws CorruptRecordError. */
  kvEntry(key: string): Promise<KvEntry | undefined>;
  kvPut(key: string, value: unknown): Promise<void>;
  /** Writes only if the key does not exist; false when it does (someone else created it first). */
  kvCreate(key: string, value: unknown): Promise<boolean>;
  /** Writes only if the key is still at `revision`; false when it moved on meanwhile. */
  kvUpdate(key: string, value: unknown, revision: KvEntry['revision']): Promise<boolean>;
  /** Calls back with each new value of key (and the current one first); returns a stop function. A value
   *  that is not JSON goes to `onBad` (default: ignored) and the watch goes on; so does one `onValue`
   *  throws on. */
  kvWatch(
    key: string,
    onValue: (value: unknown) => void,
    onBad?: (e: CorruptRecordError) => void,
  ): Promise<() => Promise<void>>;
}

function parseRecord(key: string, text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CorruptRecordError(key, `not JSON (${(e as Error).message})`);
  }
}

/** Delivers one watched value; nothing a value does may end the watch (or the process). */
function deliver(
  key: string,
  text: string,
  onValue: (value: unknown) => void,
  onBad: ((e: CorruptRecordError) => void) | undefined,
): void {
  let value: unknown;
  try {
    value = parseRecord(key, text);
  } catch (e) {
    onBad?.(e as CorruptRecordError);
    return;
  }
  try {
    onValue(value);
  } catch (e) {
    onBad?.(e instanceof CorruptRecordError ? e : new CorruptRecordError(key, (e as Error).message));
  }
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A read-only store was opened before its bucket exists (only writers and admins may create one). */
export class MissingBucketError extends Error {
  override name = 'MissingBucketError';
  constructor(
    readonly bucket: string,
    readonly kind: 'kv' | 'object',
  ) {
    super(
      `${kind === 'kv' ? 'KV' : 'object store'} bucket '${bucket}' does not exist and this read-only user may not ` +
        `create it ('dalle up --secure' creates every bucket; on a cluster create them first)`,
    );
  }
}

/** JetStream: object store bucket + KV bucket of the same purpose (e.g. dalle-checkpoints / dalle-runs). */
export class NatsStorageBackend implements StorageBackend {
  readonly kind = 'nats';
  private constructor(
    private readonly os: ObjectStore,
    private readonly kv: KV,
  ) {}

  /** `readOnly`: bind to existing buckets and never try to create them (a read-only user may not). */
  static async open(
    nc: NatsConnection,
    objectBucket: string,
    kvBucket: string,
    opts: { replicas?: number; readOnly?: boolean } = {},
  ): Promise<NatsStorageBackend> {
    const js = nc.jetstream();
    if (opts.readOnly) {
      const jsm = await nc.jetstreamManager();
      for (const stream of [`OBJ_${objectBucket}`, `KV_${kvBucket}`]) {
        const found = await jsm.streams.info(stream).then(
          () => true,
          (e: Error) => {
            if (/not found/i.test(e.message)) return false;
            throw e;
          },
        );
        if (!found)
          throw new MissingBucketError(
            stream.replace(/^(OBJ|KV)_/, ''),
            stream.startsWith('KV_') ? 'kv' : 'object',
          );
      }
      return new NatsStorageBackend(
        await js.views.os(objectBucket),
        await js.views.kv(kvBucket, { bindOnly: true }),
      );
    }
    const os = await js.views.os(objectBucket, {
      storage: 'file' as never,
      replicas: opts.replicas ?? 1,
    } as never);
    const kv = await js.views.kv(kvBucket, { history: 8, replicas: opts.replicas ?? 1 });
    return new NatsStorageBackend(os, kv);
  }

  async putObject(name: string, bytes: Uint8Array): Promise<string> {
    await this.os.putBlob({ name }, bytes);
    return sha256(bytes);
  }

  async getObject(name: string): Promise<Uint8Array | undefined> {
    const b = await this.os.getBlob(name);
    return b ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : undefined; // a plain view, not a Buffer
  }

  async deleteObject(name: string): Promise<void> {
    if (await this.os.info(name)) await this.os.delete(name);
  }

  async listObjects(prefix: string): Promise<string[]> {
    return (await this.os.list())
      .filter((i) => !i.deleted && i.name.startsWith(prefix))
      .map((i) => i.name)
      .sort();
  }

  async kvGet(key: string): Promise<unknown | undefined> {
    return (await this.kvEntry(key))?.value;
  }

  async kvEntry(key: string): Promise<KvEntry | undefined> {
    const e = await this.kv.get(key);
    if (!e || e.operation !== 'PUT' || !e.value.length) return undefined;
    return { value: parseRecord(key, dec.decode(e.value)), revision: e.revision };
  }

  async kvPut(key: string, value: unknown): Promise<void> {
    await this.kv.put(key, enc.encode(JSON.stringify(value)));
  }

  async kvCreate(key: string, value: unknown): Promise<boolean> {
    return this.kv.create(key, enc.encode(JSON.stringify(value))).then(
      () => true,
      (e: Error) => (isRevisionConflict(e) ? false : Promise.reject(e)),
    );
  }

  async kvUpdate(key: string, value: unknown, revision: KvEntry['revision']): Promise<boolean> {
    return this.kv.update(key, enc.encode(JSON.stringify(value)), Number(revision)).then(
      () => true,
      (e: Error) => (isRevisionConflict(e) ? false : Promise.reject(e)),
    );
  }

  async kvWatch(
    key: string,
    onValue: (value: unknown) => void,
    onBad?: (e: CorruptRecordError) => void,
  ): Promise<() => Promise<void>> {
    const it = await this.kv.watch({ key });
    void (async () => {
      try {
        for await (const e of it)
          if (e.operation === 'PUT' && e.value.length) deliver(key, dec.decode(e.value), onValue, onBad);
      } catch {
        // the connection closed under the watch: whoever watches re-watches when it comes back
      }
    })();
    return async () => it.stop();
  }
}

/** JetStream's answer to a create/update whose expected revision (or absence) no longer holds. */
function isRevisionConflict(e: Error): boolean {
  return /wrong last sequence|key exists|revision/i.test(e.message);
}

/** A local folder: objects are files (written to a temp name, then renamed: atomic), KV is one JSON file per key. */
export class FolderStorageBackend implements StorageBackend {
  readonly kind = 'folder';
  constructor(readonly root: string) {
    mkdirSync(join(root, 'objects'), { recursive: true });
    mkdirSync(join(root, 'kv'), { recursive: true });
  }

  private objectPath(name: string): string {
    if (name.split('/').some((p) => p === '..' || p === '')) throw new Error(`bad object name '${name}'`);
    return join(this.root, 'objects', ...name.split('/'));
  }

  private kvPath(key: string): string {
    if (!/^[A-Za-z0-9_.=-]+$/.test(key)) throw new Error(`bad KV key '${key}'`);
    return join(this.root, 'kv', `${key}.json`);
  }

  private static atomicWrite(path: string, bytes: Uint8Array | string): void {
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    writeFileSync(tmp, bytes, { flush: true });
    renameSync(tmp, path);
  }

  async putObject(name: string, bytes: Uint8Array): Promise<string> {
    FolderStorageBackend.atomicWrite(this.objectPath(name), bytes);
    return sha256(bytes);
  }

  async getObject(name: string): Promise<Uint8Array | undefined> {
    try {
      return new Uint8Array(readFileSync(this.objectPath(name)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async deleteObject(name: string): Promise<void> {
    rmSync(this.objectPath(name), { force: true });
  }

  async listObjects(prefix: string): Promise<string[]> {
    const base = join(this.root, 'objects');
    const out: string[] = [];
    const walk = (dir: string) => {
      if (!existsSync(dir)) return;
      for (const n of readdirSync(dir)) {
        const p = join(dir, n);
        if (statSync(p).isDirectory()) walk(p);
        else if (!n.includes('.tmp-')) out.push(relative(base, p).split(sep).join('/'));
      }
    };
    walk(base);
    return out.filter((n) => n.startsWith(prefix)).sort();
  }

  private readText(key: string): string | undefined {
    try {
      return readFileSync(this.kvPath(key), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  async kvGet(key: string): Promise<unknown | undefined> {
    return (await this.kvEntry(key))?.value;
  }

  async kvEntry(key: string): Promise<KvEntry | undefined> {
    const text = this.readText(key);
    return text === undefined
      ? undefined
      : { value: parseRecord(key, text), revision: sha256(Buffer.from(text)) };
  }

  async kvPut(key: string, value: unknown): Promise<void> {
    FolderStorageBackend.atomicWrite(this.kvPath(key), JSON.stringify(value));
  }

  async kvCreate(key: string, value: unknown): Promise<boolean> {
    const path = this.kvPath(key);
    const tmp = `${path}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`;
    writeFileSync(tmp, JSON.stringify(value), { flush: true });
    try {
      linkSync(tmp, path); // atomic, and fails if the key exists
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw e;
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  async kvUpdate(key: string, value: unknown, revision: KvEntry['revision']): Promise<boolean> {
    const path = this.kvPath(key);
    return this.locked(path, () => {
      const text = this.readText(key);
      if (text === undefined || sha256(Buffer.from(text)) !== revision) return false;
      FolderStorageBackend.atomicWrite(path, JSON.stringify(value));
      return true;
    });
  }

  /** Runs `f` holding a lock on `path` (mkdir is atomic); a lock older than 10 s is a crashed holder's. */
  private async locked<T>(path: string, f: () => T): Promise<T> {
    const lock = `${path}.lock`;
    for (let i = 0; ; i++) {
      try {
        mkdirSync(lock);
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        const age = Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
        if (age > 10_000) rmSync(lock, { recursive: true, force: true });
        await new Promise((r) => setTimeout(r, Math.min(50, 1 + i)));
      }
    }
    try {
      return f();
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }

  async kvWatch(
    key: string,
    onValue: (value: unknown) => void,
    onBad?: (e: CorruptRecordError) => void,
  ): Promise<() => Promise<void>> {
    let last = '';
    const poll = () => {
      let text: string | undefined;
      try {
        text = this.readText(key);
      } catch {
        return;
      }
      if (text && text !== last) {
        last = text;
        deliver(key, text, onValue, onBad);
      }
    };
    poll();
    // fs.watch on the folder catches renames; the interval covers filesystems where it does not fire.
    const w = watch(join(this.root, 'kv'), () => poll());
    const t = setInterval(poll, 500);
    t.unref();
    return async () => {
      w.close();
      clearInterval(t);
    };
  }
}
