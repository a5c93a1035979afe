// Published model bundles: object `models/<name>/<version>`, KV `<name>.v<version>` and `<name>.latest` →
// {version, sha256, bytes, …}. Versions are consecutive integers claimed with compare-and-swap, so two
// publishers racing never get the same version or overwrite each other; the sampler watches the latest key
// and swaps models when it moves. A record that is not a valid ModelVersion is reported and skipped.
import { z } from 'zod';
import { CorruptRecordError, sha256, type StorageBackend } from './storage-backend.ts';

export const ModelVersion = z.strictObject({
  name: z.string(),
  version: z.number().int().positive(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
  createdAt: z.string(),
  /** e.g. run id, preset, steps. */
  meta: z.record(z.string(), z.unknown()).default({}),
});
export type ModelVersion = z.infer<typeof ModelVersion>;

const namePattern = /^[a-z0-9][a-z0-9_-]*$/;

export class ModelNotFoundError extends Error {
  override name = 'ModelNotFoundError';
  constructor(
    readonly model: string,
    readonly version?: number,
  ) {
    super(version ? `model ${model} version ${version} not found` : `no published model named '${model}'`);
  }
}

export class CorruptModelError extends Error {
  override name = 'CorruptModelError';
  readonly corrupt = true;
  constructor(
    readonly info: ModelVersion,
    readonly actual: string | undefined,
  ) {
    super(
      `model ${info.name} v${info.version}: ${actual ? `sha256 ${actual} does not match ${info.sha256}` : 'bundle object missing'}`,
    );
  }
}

export interface ModelStoreOptions {
  /** Told about every record that is skipped because it is not a valid ModelVersion. */
  onBadRecord?: (e: CorruptRecordError) => void;
}

/** A KV value as a ModelVersion of `name` (and `version`, when the key names one), or CorruptRecordError. */
function asVersion(key: string, v: unknown, name: string, version?: number): ModelVersion {
  const r = ModelVersion.safeParse(v);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new CorruptRecordError(
      key,
      `not a model version record (${i.path.join('.') || 'value'}: ${i.message})`,
    );
  }
  if (r.data.name !== name || (version !== undefined && r.data.version !== version))
    throw new CorruptRecordError(key, `describes ${r.data.name} v${r.data.version}`);
  return r.data;
}

export class ModelStore {
  private readonly onBadRecord: (e: CorruptRecordError) => void;
  constructor(
    readonly backend: StorageBackend,
    opts: ModelStoreOptions = {},
  ) {
    this.onBadRecord =
      opts.onBadRecord ??
      ((e) =>
        console.error(
          JSON.stringify({
            level: 'error',
            msg: 'skipping a corrupt model record',
            key: e.key,
            problem: e.problem,
          }),
        ));
  }

  private static check(name: string): void {
    if (!namePattern.test(name)) throw new Error(`model name '${name}' must match ${namePattern}`);
  }

  /** Stores a bundle as the next version: the version number is claimed first (create-if-absent on
   *  `<name>.v<N>`, moving to N+1 when another publisher got N), then the bytes, then `latest` moves
   *  forward by compare-and-swap (never back to an older version another publisher already passed). */
  async publish(name: string, bundle: Uint8Array, meta: Record<string, unknown> = {}): Promise<ModelVersion> {
    ModelStore.check(name);
    const base = { name, sha256: sha256(bundle), bytes: bundle.length, meta };
    let version = ((await this.latest(name).catch(() => undefined))?.version ?? 0) + 1;
    let info: ModelVersion;
    for (;;) {
      info = ModelVersion.parse({ ...base, version, createdAt: new Date().toISOString() });
      if (await this.backend.kvCreate(`${name}.v${version}`, info)) break;
      version++;
    }
    await this.backend.putObject(`models/${name}/${version}`, bundle);
    await this.advanceLatest(name, info);
    return info;
  }

  private async advanceLatest(name: string, info: ModelVersion): Promise<void> {
    const key = `${name}.latest`;
    for (;;) {
      const cur = await this.backend.kvEntry(key).catch((e: unknown) => {
        if (e instanceof CorruptRecordError) return { value: undefined, revision: 'corrupt' as const };
        throw e;
      });
      if (!cur) {
        if (await this.backend.kvCreate(key, info)) return;
        continue;
      }
      const prev = ModelVersion.safeParse(cur.value);
      if (prev.success && prev.data.version >= info.version) return; // a newer version already serves
      // A corrupt pointer is replaced outright (there is no revision of it worth preserving).
      if (cur.revision === 'corrupt') return this.backend.kvPut(key, info);
      if (await this.backend.kvUpdate(key, info, cur.revision)) return;
    }
  }

  /** The latest version, undefined when none; throws CorruptRecordError when the pointer is unusable. */
  async latest(name: string): Promise<ModelVersion | undefined> {
    ModelStore.check(name);
    const key = `${name}.latest`;
    const v = await this.backend.kvGet(key);
    return v === undefined ? undefined : asVersion(key, v, name);
  }

  async info(name: string, version?: number): Promise<ModelVersion> {
    ModelStore.check(name);
    if (version === undefined) {
      const latest = await this.latest(name);
      if (!latest) throw new ModelNotFoundError(name);
      return latest;
    }
    const key = `${name}.v${version}`;
    const v = await this.backend.kvGet(key);
    if (v === undefined) throw new ModelNotFoundError(name, version);
    return asVersion(key, v, name, version);
  }

  /** The bundle's bytes, verified against the published sha256. */
  async load(name: string, version?: number): Promise<{ info: ModelVersion; bundle: Uint8Array }> {
    const info = await this.info(name, version);
    const bundle = await this.backend.getObject(`models/${name}/${info.version}`);
    const actual = bundle ? sha256(bundle) : undefined;
    if (!bundle || actual !== info.sha256) throw new CorruptModelError(info, actual);
    return { info, bundle };
  }

  /** Every published version of a model, oldest first. */
  async versions(name: string): Promise<ModelVersion[]> {
    const latest = await this.latest(name);
    if (!latest) return [];
    const out: ModelVersion[] = [];
    for (let v = 1; v < latest.version; v++) {
      const info = await this.backend.kvGet(`${name}.v${v}`);
      if (info !== undefined) out.push(ModelVersion.parse(info));
    }
    return [...out, latest];
  }

  /** Published model names. */
  async names(): Promise<string[]> {
    const objs = await this.backend.listObjects('models/');
    return [...new Set(objs.map((o) => o.split('/')[1]!))].filter((n) => namePattern.test(n)).sort();
  }

  /** Calls back with the latest version now and whenever it moves. Records that are not valid versions
   *  of `name` are reported (`onBadRecord`) and skipped: the watch, and whoever relies on it, go on. */
  async watch(name: string, onVersion: (info: ModelVersion) => void): Promise<() => Promise<void>> {
    ModelStore.check(name);
    const key = `${name}.latest`;
    return this.backend.kvWatch(key, (v) => onVersion(asVersion(key, v, name)), this.onBadRecord);
  }
}
