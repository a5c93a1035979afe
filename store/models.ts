// Published model bundles: object `models/<name>/<version>`, KV `<name>.latest` → {version, sha256, bytes}.
// Versions are consecutive integers; the sampler watches the latest key and swaps models when it moves.
import { z } from 'zod';
import { sha256, type StorageBackend } from './storage-backend.ts';

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
  constructor(
    readonly info: ModelVersion,
    readonly actual: string | undefined,
  ) {
    super(
      `model ${info.name} v${info.version}: ${actual ? `sha256 ${actual} does not match ${info.sha256}` : 'bundle object missing'}`,
    );
  }
}

export class ModelStore {
  constructor(readonly backend: StorageBackend) {}

  private static check(name: string): void {
    if (!namePattern.test(name)) throw new Error(`model name '${name}' must match ${namePattern}`);
  }

  async publish(name: string, bundle: Uint8Array, meta: Record<string, unknown> = {}): Promise<ModelVersion> {
    ModelStore.check(name);
    const prev = await this.latest(name);
    const version = (prev?.version ?? 0) + 1;
    const hash = await this.backend.putObject(`models/${name}/${version}`, bundle);
    const info = ModelVersion.parse({
      name,
      version,
      sha256: hash,
      bytes: bundle.length,
      createdAt: new Date().toISOString(),
      meta,
    });
    await this.backend.kvPut(`${name}.v${version}`, info);
    await this.backend.kvPut(`${name}.latest`, info);
    return info;
  }

  async latest(name: string): Promise<ModelVersion | undefined> {
    ModelStore.check(name);
    const v = await this.backend.kvGet(`${name}.latest`);
    return v === undefined ? undefined : ModelVersion.parse(v);
  }

  async info(name: string, version?: number): Promise<ModelVersion> {
    ModelStore.check(name);
    const v =
      version === undefined ? await this.latest(name) : await this.backend.kvGet(`${name}.v${version}`);
    if (v === undefined) throw new ModelNotFoundError(name, version);
    return ModelVersion.parse(v);
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
    return [...new Set(objs.map((o) => o.split('/')[1]!))].sort();
  }

  /** Calls back with the latest version now and whenever it moves. */
  async watch(name: string, onVersion: (info: ModelVersion) => void): Promise<() => Promise<void>> {
    ModelStore.check(name);
    return this.backend.kvWatch(`${name}.latest`, (v) => onVersion(ModelVersion.parse(v)));
  }
}
