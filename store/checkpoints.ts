// Checkpoints with a two-phase commit: every part is stored first, then one manifest names them with their
// sha256, then the KV pointer `<runId>.<stage>.committed` moves to it. A reader only ever follows the
// pointer, so a crash at any moment leaves the previous checkpoint in force; a part whose bytes do not
// match its sha256 makes the loader fall back to the previous committed checkpoint and say so.
import { z } from 'zod';
import { CorruptRecordError, sha256, type StorageBackend } from './storage-backend.ts';

export const PartRef = z.strictObject({
  name: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  bytes: z.number().int().nonnegative(),
});
export type PartRef = z.infer<typeof PartRef>;

export const CheckpointManifest = z.strictObject({
  runId: z.string(),
  stage: z.string(),
  step: z.number().int().nonnegative(),
  parts: z.array(PartRef),
  createdAt: z.string(),
  /** Small facts for status and resume (loss, world size, group id…); never tensors. */
  meta: z.record(z.string(), z.unknown()).default({}),
});
export type CheckpointManifest = z.infer<typeof CheckpointManifest>;

const idPattern = /^[A-Za-z0-9_-]+$/;

/** The part holding a checkpoint's sample grid (a PNG drawn by rank 0 from the weights it stores). */
export const SAMPLES_PART = 'samples';

/** Parts that outlive the pruning of their checkpoint: small pictures (a few KB each) that show how a run
 *  learned, one per checkpoint. Never read for a resume. */
export const RETAINED_PARTS: readonly string[] = [SAMPLES_PART];

/** A part's bytes do not match the manifest (or it is missing). */
export class CorruptPartError extends Error {
  override name = 'CorruptPartError';
  constructor(
    readonly key: string,
    readonly expected: string,
    readonly actual: string | undefined,
  ) {
    super(
      actual
        ? `checkpoint part ${key}: sha256 ${actual} does not match the manifest's ${expected}`
        : `checkpoint part ${key} is missing`,
    );
  }
}

/** Checkpoints of this run and stage exist, but not one of them verifies: resuming from step 0 would
 *  silently throw away the run's progress, so the run stops instead (fatal: no relaunch fixes it). */
export class NoVerifiedCheckpointError extends Error {
  override name = 'NoVerifiedCheckpointError';
  readonly fatal = true;
  constructor(
    readonly runId: string,
    readonly stage: string,
    /** Steps tried, newest first, each with why it was unusable. */
    readonly tried: { step: number; reason: string }[],
  ) {
    super(
      `run ${runId} stage ${stage}: no committed checkpoint verifies (${tried
        .map((t) => `step ${t.step}: ${t.reason}`)
        .join(
          '; ',
        )}); refusing to start over from step 0 — restore the checkpoint objects or start a new run id`,
    );
  }
}

/** A run id's checkpoints were written under another spec: resuming them would train a different model
 *  (or fail deep in a weight loader). Fatal: the run id must change, or the spec go back. */
export class SpecMismatchError extends Error {
  override name = 'SpecMismatchError';
  readonly fatal = true;
  readonly userError = true;
  constructor(
    readonly runId: string,
    readonly recorded: string,
    readonly given: string,
  ) {
    super(
      `run ${runId} already has checkpoints of another spec (spec sha256 ${recorded.slice(0, 12)}…, this one ` +
        `${given.slice(0, 12)}…): start it under a new --run-id, or resume it with the spec it was started with`,
    );
  }
}

export interface CheckpointStoreOptions {
  /** Committed checkpoints kept per stage (older ones are deleted after each commit). */
  keep?: number;
  /** Told when a committed checkpoint is unusable and an older one is used instead. */
  onFallback?: (info: {
    runId: string;
    stage: string;
    badStep: number;
    reason: string;
    usingStep: number | undefined;
  }) => void;
}

export class CheckpointStore {
  constructor(
    readonly backend: StorageBackend,
    private readonly opts: CheckpointStoreOptions = {},
  ) {}

  static checkIds(runId: string, stage: string): void {
    if (!idPattern.test(runId)) throw new Error(`run id '${runId}' must match ${idPattern}`);
    if (!idPattern.test(stage)) throw new Error(`stage '${stage}' must match ${idPattern}`);
  }

  partKey(runId: string, stage: string, step: number, part: string): string {
    return `runs/${runId}/${stage}/${step}/${part}`;
  }

  private pointerKey(runId: string, stage: string): string {
    return `${runId}.${stage}.committed`;
  }

  /** Throws SpecMismatchError when `m` was committed under a spec whose hash is not `hash` (manifests
   *  written before hashes were recorded carry none and pass). */
  static checkSpec(m: CheckpointManifest, hash: string): void {
    const recorded = m.meta.specHash;
    if (typeof recorded === 'string' && recorded !== hash)
      throw new SpecMismatchError(m.runId, recorded, hash);
  }

  /** The spec hash the run's newest committed checkpoint (of any stage) records, if any. */
  async recordedSpecHash(runId: string): Promise<string | undefined> {
    for (const stage of ['transformer', 'dvae']) {
      const m = await this.latest(runId, stage).catch(() => undefined);
      if (typeof m?.meta.specHash === 'string') return m.meta.specHash;
    }
    return undefined;
  }

  /** Rank 0's live progress of a run (overwritten every few seconds: it keeps workflow histories small). */
  async putProgress(runId: string, report: Record<string, unknown>): Promise<void> {
    CheckpointStore.checkIds(runId, 'progress');
    await this.backend.kvPut(`${runId}.progress`, { ...report, at: new Date().toISOString() });
  }

  /** The last progress report of a run, or undefined (none yet, or an unreadable record). */
  async progress(runId: string): Promise<Record<string, unknown> | undefined> {
    CheckpointStore.checkIds(runId, 'progress');
    const v = await this.backend.kvGet(`${runId}.progress`).catch(() => undefined);
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  }

  /** Phase 1: store one part (any rank may call this). */
  async putPart(
    runId: string,
    stage: string,
    step: number,
    part: string,
    bytes: Uint8Array,
  ): Promise<PartRef> {
    CheckpointStore.checkIds(runId, stage);
    if (!idPattern.test(part)) throw new Error(`part name '${part}' must match ${idPattern}`);
    const hash = await this.backend.putObject(this.partKey(runId, stage, step, part), bytes);
    return { name: part, sha256: hash, bytes: bytes.length };
  }

  /** Phase 2: after every part is stored, write the manifest and move the pointer; then prune old ones. */
  async commit(
    m: Omit<CheckpointManifest, 'createdAt' | 'meta'> & { meta?: Record<string, unknown> },
    keep = this.opts.keep ?? 3,
  ): Promise<CheckpointManifest> {
    CheckpointStore.checkIds(m.runId, m.stage);
    const manifest = CheckpointManifest.parse({
      ...m,
      meta: m.meta ?? {},
      createdAt: new Date().toISOString(),
    });
    await this.backend.putObject(
      this.partKey(m.runId, m.stage, m.step, 'manifest.json'),
      new TextEncoder().encode(JSON.stringify(manifest)),
    );
    await this.backend.kvPut(this.pointerKey(m.runId, m.stage), manifest);
    await this.prune(m.runId, m.stage, m.step, keep);
    return manifest;
  }

  /** The pointer: the newest committed manifest, unverified. Throws CorruptRecordError when the pointer
   *  is not a manifest. */
  async latest(runId: string, stage: string): Promise<CheckpointManifest | undefined> {
    CheckpointStore.checkIds(runId, stage);
    const key = this.pointerKey(runId, stage);
    const v = await this.backend.kvGet(key);
    if (v === undefined) return undefined;
    const m = CheckpointManifest.safeParse(v);
    if (!m.success)
      throw new CorruptRecordError(key, `not a checkpoint manifest (${m.error.issues[0]!.message})`);
    return m.data;
  }

  /** Steps that have a manifest stored, ascending. */
  async committedSteps(runId: string, stage: string): Promise<number[]> {
    const names = await this.backend.listObjects(`runs/${runId}/${stage}/`);
    return names
      .filter((n) => n.endsWith('/manifest.json'))
      .map((n) => Number(n.split('/')[3]))
      .filter((s) => Number.isInteger(s))
      .sort((a, b) => a - b);
  }

  async manifestAt(runId: string, stage: string, step: number): Promise<CheckpointManifest | undefined> {
    const key = this.partKey(runId, stage, step, 'manifest.json');
    const bytes = await this.backend.getObject(key);
    if (!bytes) return undefined;
    let raw: unknown;
    try {
      raw = JSON.parse(new TextDecoder().decode(bytes));
    } catch (e) {
      throw new CorruptRecordError(key, `not JSON (${(e as Error).message})`);
    }
    const m = CheckpointManifest.safeParse(raw);
    if (!m.success)
      throw new CorruptRecordError(key, `not a checkpoint manifest (${m.error.issues[0]!.message})`);
    if (m.data.runId !== runId || m.data.stage !== stage || m.data.step !== step)
      throw new CorruptRecordError(key, `describes ${m.data.runId}/${m.data.stage}/${m.data.step}`);
    return m.data;
  }

  /** One part's bytes, verified against the manifest. */
  async loadPart(manifest: CheckpointManifest, name: string): Promise<Uint8Array> {
    const ref = manifest.parts.find((p) => p.name === name);
    const key = this.partKey(manifest.runId, manifest.stage, manifest.step, name);
    if (!ref) throw new CorruptPartError(key, '(not in manifest)', undefined);
    const bytes = await this.backend.getObject(key);
    if (!bytes) throw new CorruptPartError(key, ref.sha256, undefined);
    const actual = sha256(bytes);
    if (actual !== ref.sha256) throw new CorruptPartError(key, ref.sha256, actual);
    return bytes;
  }

  /** Verify every part of a manifest (reads all bytes). */
  async verify(manifest: CheckpointManifest): Promise<void> {
    for (const p of manifest.parts) await this.loadPart(manifest, p.name);
  }

  /** The newest committed checkpoint whose parts all verify, falling back step by step (every fallback
   *  reported through `onFallback`); undefined only when this run and stage have no checkpoint at all (a
   *  fresh start). A pointer that is unreadable is a fallback too: the manifests stored beside the parts
   *  are searched. Throws NoVerifiedCheckpointError when checkpoints exist but none verifies. */
  async resolve(
    runId: string,
    stage: string,
    onFallback = this.opts.onFallback,
  ): Promise<CheckpointManifest | undefined> {
    const tried: { step: number; reason: string }[] = [];
    let pointer: CheckpointManifest | undefined;
    try {
      pointer = await this.latest(runId, stage);
    } catch (e) {
      if (!(e instanceof CorruptRecordError)) throw e;
      tried.push({ step: -1, reason: e.message });
    }
    const stored = await this.committedSteps(runId, stage);
    const candidates = stored.filter((s) => pointer === undefined || s <= pointer.step).reverse();
    if (pointer && !candidates.includes(pointer.step)) candidates.unshift(pointer.step);
    if (!pointer && !tried.length && !candidates.length) return undefined; // never checkpointed: fresh
    if (tried.length)
      onFallback?.({ runId, stage, badStep: -1, reason: tried[0]!.reason, usingStep: candidates[0] });
    for (let i = 0; i < candidates.length; i++) {
      const step = candidates[i]!;
      try {
        const m = step === pointer?.step ? pointer : await this.manifestAt(runId, stage, step);
        if (!m) throw new Error(`manifest of step ${step} is missing`);
        await this.verify(m);
        return m;
      } catch (e) {
        tried.push({ step, reason: (e as Error).message });
        onFallback?.({
          runId,
          stage,
          badStep: step,
          reason: (e as Error).message,
          usingStep: candidates[i + 1],
        });
      }
    }
    throw new NoVerifiedCheckpointError(runId, stage, tried);
  }

  /** The newest of `steps` (ascending) whose checkpoint verifies, or undefined. */
  private async newestVerified(runId: string, stage: string, steps: number[]): Promise<number | undefined> {
    for (const step of [...steps].reverse()) {
      const m = await this.manifestAt(runId, stage, step).catch(() => undefined);
      if (
        m &&
        (await this.verify(m).then(
          () => true,
          () => false,
        ))
      )
        return step;
    }
    return undefined;
  }

  /** Stored parts named `part` of a stage, pruned checkpoints' included (see RETAINED_PARTS), by step. */
  async partsNamed(runId: string, stage: string, part: string): Promise<{ step: number; key: string }[]> {
    CheckpointStore.checkIds(runId, stage);
    return (await this.backend.listObjects(`runs/${runId}/${stage}/`))
      .map((key) => ({ key, at: key.split('/') }))
      .filter(({ at }) => at.length === 5 && at[4] === part && Number.isInteger(Number(at[3])))
      .map(({ key, at }) => ({ step: Number(at[3]), key }))
      .sort((a, b) => a.step - b.step);
  }

  /** Keep the newest `keep` committed checkpoints and delete older parts (but RETAINED_PARTS) and manifests,
   *  but never the newest one that verifies (read back here: bytes can rot after their sha256 was taken).
   *  Parts of uncommitted steps newer than the pointer (a segment in flight) are left alone. */
  private async prune(runId: string, stage: string, committedStep: number, keep: number): Promise<void> {
    const steps = (await this.committedSteps(runId, stage)).filter((s) => s <= committedStep);
    const drop = new Set(steps.slice(0, Math.max(0, steps.length - keep)));
    if (!drop.size) return;
    const verified = await this.newestVerified(runId, stage, steps);
    if (verified === undefined) return; // nothing verifies: delete nothing, whoever resumes will say so
    for (const s of [...drop]) if (s >= verified) drop.delete(s);
    for (const name of await this.backend.listObjects(`runs/${runId}/${stage}/`)) {
      const [, , , step, part] = name.split('/');
      if (drop.has(Number(step)) && !RETAINED_PARTS.includes(part!)) await this.backend.deleteObject(name);
    }
  }
}
