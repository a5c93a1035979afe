// Which models the sampler holds in memory, and which version an unversioned request gets.
//
// The default model's `<name>.latest` key is watched: each new version is loaded beside the serving one
// and swapped in only once it loaded; requests already running keep the model they leased, which is
// disposed when the last of them releases it. A failed load is logged and the old version keeps serving.
// Other names and pinned versions load on demand and stay in a small LRU.
import type { ModelStore, ModelVersion } from '../../store/index.ts';
import type { ModelFacts, ModelLoader, SamplingModel } from './engine.ts';
import { ModelLoadError, NoModelLoadedError } from './errors.ts';

export interface RegistryOptions {
  store: ModelStore;
  loader: ModelLoader;
  /** The model an empty request name means, watched for new versions. */
  defaultModel: string;
  /** Unreferenced models kept besides the serving ones (pinned versions, other names). */
  maxExtraModels?: number;
  /** Structured log lines (load, swap, failure). */
  log?: (level: 'info' | 'error', msg: string, fields?: Record<string, unknown>) => void;
  /** Called when the version an unversioned request for `name` gets changes. */
  onServing?: (name: string, facts: ModelFacts) => void;
}

/** A model held for the duration of one request; `release` exactly once. */
export interface ModelLease {
  readonly model: SamplingModel;
  release(): void;
}

interface Entry {
  key: string;
  model: SamplingModel;
  refs: number;
  /** No longer serving and not cached: disposed when refs reaches 0. */
  retired: boolean;
  lastUsed: number;
}

const keyOf = (name: string, version: number) => `${name}@${version}`;

export class ModelRegistry {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();
  /** name → key of the serving entry. */
  private readonly serving = new Map<string, string>();
  private stopWatch: (() => Promise<void>) | undefined;
  /** The newest version seen by the watch, loaded one at a time (a burst of publishes loads only the last). */
  private wanted: ModelVersion | undefined;
  private watchLoop: Promise<void> | undefined;
  private closed = false;
  /** Loads run one at a time: memory for one new model, not for every version a burst asks for. */
  private loadSlot: Promise<unknown> = Promise.resolve();
  readonly loadFailures: { name: string; version: number; error: string }[] = [];
  private readonly log: NonNullable<RegistryOptions['log']>;

  constructor(private readonly opts: RegistryOptions) {
    this.log =
      opts.log ??
      ((level, msg, fields) =>
        (level === 'error' ? console.error : console.log)(JSON.stringify({ level, msg, ...fields })));
  }

  get defaultModel(): string {
    return this.opts.defaultModel;
  }

  /** Starts watching the default model's latest version (loads the current one, if any, in the background). */
  async start(): Promise<void> {
    this.stopWatch = await this.opts.store.watch(this.opts.defaultModel, (info) => {
      this.wanted = info;
      this.watchLoop ??= this.followWatch().finally(() => (this.watchLoop = undefined));
    });
  }

  /** Watches afresh (after the store's connection came back: the old watch may have missed versions
   *  published meanwhile, or died with the server); the current latest arrives first and is caught up. */
  async resync(): Promise<void> {
    if (this.closed) return;
    const stop = this.stopWatch;
    this.stopWatch = undefined;
    await stop?.().catch(() => undefined);
    await this.start();
    this.log('info', 'model watch resynced', { model: this.opts.defaultModel });
  }

  /** Resolves once the default model serves at least `minVersion` (or throws after timeoutMs). */
  async waitForServing(minVersion = 1, timeoutMs = 60_000): Promise<ModelFacts> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.servingFacts(this.opts.defaultModel);
      if (f && f.version >= minVersion) return f;
      if (Date.now() > deadline) throw new NoModelLoadedError(this.opts.defaultModel);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private async followWatch(): Promise<void> {
    while (this.wanted && !this.closed) {
      const info = this.wanted;
      this.wanted = undefined;
      const current = this.servingFacts(info.name);
      if (current && current.version >= info.version) continue;
      try {
        const entry = await this.load(info.name, info.version);
        this.promote(info.name, entry);
      } catch (e) {
        // Keep serving what we have: a bad publish must not take the service down.
        this.loadFailures.push({ name: info.name, version: info.version, error: (e as Error).message });
        this.log('error', 'model load failed; keeping the serving version', {
          model: info.name,
          version: info.version,
          serving: current?.version ?? null,
          error: (e as Error).message,
        });
      }
    }
  }

  private promote(name: string, entry: Entry): void {
    const prevKey = this.serving.get(name);
    if (prevKey === entry.key) return;
    entry.retired = false;
    this.serving.set(name, entry.key);
    const prev = prevKey ? this.entries.get(prevKey) : undefined;
    if (prev) {
      prev.retired = true;
      this.maybeDispose(prev);
    }
    this.log('info', prev ? 'model swapped' : 'model serving', {
      model: name,
      version: entry.model.facts.version,
      previous: prev?.model.facts.version ?? null,
      inFlightOnPrevious: prev?.refs ?? 0,
    });
    this.opts.onServing?.(name, entry.model.facts);
  }

  /** Loads (or finds) one version; concurrent callers share one load. */
  private load(name: string, version: number): Promise<Entry> {
    const key = keyOf(name, version);
    const have = this.entries.get(key);
    if (have) return Promise.resolve(have);
    let p = this.loading.get(key);
    if (!p) {
      const run = async () => {
        const t0 = performance.now();
        const { info, bundle } = await this.opts.store.load(name, version);
        let model: SamplingModel;
        try {
          model = await this.opts.loader(bundle, { name, version: info.version, createdAt: info.createdAt });
        } catch (e) {
          throw new ModelLoadError(name, version, e);
        }
        const entry: Entry = { key, model, refs: 0, retired: false, lastUsed: Date.now() };
        this.entries.set(key, entry);
        this.log('info', 'model loaded', {
          model: name,
          version,
          bytes: info.bytes,
          ms: Math.round(performance.now() - t0),
        });
        return entry;
      };
      p = this.loadSlot.then(run, run).finally(() => this.loading.delete(key));
      this.loadSlot = p.catch(() => undefined);
      this.loading.set(key, p);
    }
    return p;
  }

  /** The serving model's facts for `name`, if one is loaded. */
  servingFacts(name: string): ModelFacts | undefined {
    const k = this.serving.get(name);
    return k ? this.entries.get(k)?.model.facts : undefined;
  }

  /** Versions of `name` held in memory. */
  loadedVersions(name: string): number[] {
    return [...this.entries.values()]
      .filter((e) => e.model.facts.name === name)
      .map((e) => e.model.facts.version)
      .sort((a, b) => a - b);
  }

  /**
   * Leases a model for one request. Empty name: the default model. No version: the serving version (for a
   * name other than the default: the store's latest, loaded on demand). Throws NoModelLoadedError,
   * ModelNotFoundError, CorruptModelError or ModelLoadError.
   */
  async acquire(name: string, version?: number): Promise<ModelLease> {
    const model = name || this.opts.defaultModel;
    let entry: Entry | undefined;
    if (version === undefined && model === this.opts.defaultModel) {
      const k = this.serving.get(model);
      entry = k ? this.entries.get(k) : undefined;
      if (!entry) throw new NoModelLoadedError(model);
    } else if (version === undefined) {
      const latest = await this.opts.store.info(model);
      entry = await this.load(model, latest.version);
      this.promote(model, entry);
    } else {
      entry = await this.load(model, version);
    }
    return this.lease(entry);
  }

  private lease(entry: Entry): ModelLease {
    entry.refs++;
    entry.lastUsed = Date.now();
    let released = false;
    return {
      model: entry.model,
      release: () => {
        if (released) return;
        released = true;
        entry.refs--;
        this.maybeDispose(entry);
        this.evict();
      },
    };
  }

  private isServing(e: Entry): boolean {
    return [...this.serving.values()].includes(e.key);
  }

  private maybeDispose(e: Entry): void {
    if (e.refs > 0 || !e.retired || this.isServing(e)) return;
    this.entries.delete(e.key);
    e.model.dispose();
    this.log('info', 'model released', { model: e.model.facts.name, version: e.model.facts.version });
  }

  /** Keeps at most maxExtraModels unreferenced, non-serving entries (least recently used go first). */
  private evict(): void {
    const max = this.opts.maxExtraModels ?? 2;
    const idle = [...this.entries.values()]
      .filter((e) => e.refs === 0 && !this.isServing(e))
      .sort((a, b) => a.lastUsed - b.lastUsed);
    for (const e of idle.slice(0, Math.max(0, idle.length - max))) {
      e.retired = true;
      this.maybeDispose(e);
    }
  }

  /** Stops watching and disposes every model no request holds (held ones go when released). */
  async close(): Promise<void> {
    this.closed = true;
    await this.stopWatch?.();
    await this.watchLoop;
    this.serving.clear();
    for (const e of [...this.entries.values()]) {
      e.retired = true;
      this.maybeDispose(e);
    }
  }
}
