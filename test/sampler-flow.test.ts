// sampler: request flow over a real loopback server with a trained tiny bundle (8×8 token grid, so a
// request lasts long enough to act on): overload, cancellation and deadlines that really stop the forward
// passes, batching across requests, hot swap mid-stream over JetStream, a failed load, graceful drain.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import sharp from 'sharp';
import { generate } from '../services/sampler/client.ts';
import {
  GRID8,
  startSampler,
  waitFor,
  type HarnessOptions,
  type SamplerHarness,
} from './fixtures/sampler-harness.ts';
import { makeTinyBundle } from './fixtures/tiny-bundle.ts';

const TOKENS = 64; // GRID8: 8 × 8 image tokens
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function withSampler(
  opts: HarnessOptions & { name?: string },
  fn: (h: SamplerHarness, name: string) => Promise<void>,
): Promise<void> {
  const name = opts.name ?? 'dalle';
  const h = await startSampler({ defaultModel: name, ...opts });
  try {
    const { bytes } = await makeTinyBundle({ overrides: GRID8 });
    await h.models.publish(name, bytes, { preset: 'tiny' });
    await h.svc.registry.waitForServing(1);
    await fn(h, name);
  } finally {
    await h.close();
  }
}

const code = (c: status) => (e: ServiceError) => {
  assert.equal(status[e.code], status[c], e.details);
  return true;
};

test('sampler: overload → RESOURCE_EXHAUSTED, and capacity comes back', async () => {
  await withSampler({ scheduler: { maxConcurrent: 1, maxQueue: 1 } }, async (h) => {
    // One generating + one queued fill it; the third is refused at once.
    const results = await Promise.allSettled(
      [0, 1, 2].map((i) => generate(h.client, { prompt: 'a red circle', numImages: 4, seed: BigInt(i) })),
    );
    const refused = results.filter((r) => r.status === 'rejected');
    assert.equal(refused.length, 1, JSON.stringify(results.map((r) => r.status)));
    const err = (refused[0] as PromiseRejectedResult).reason as ServiceError;
    assert.equal(err.code, status.RESOURCE_EXHAUSTED);
    assert.match(err.details, /overloaded: .*queue limit 1.*retry later/);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 2);
    const again = await generate(h.client, { prompt: 'a red circle', numImages: 1 });
    assert.equal(again.images.length, 1);
  });
});

test('sampler: a cancelled call leaves the batch at the next token step; the request beside it finishes', async () => {
  let stepsWhenServerSawCancel = -1;
  let h!: SamplerHarness;
  const opts: HarnessOptions = {
    // Both calls must land in one session even when a loaded machine delays the second by tens of ms.
    scheduler: { batchWindowMs: 250 },
    onRequest: () => (o) => {
      if (o.code === status.CANCELLED) stepsWhenServerSawCancel = h.steps.length;
    },
  };
  await withSampler(opts, async (harness) => {
    h = harness;
    const first = h.steps.length;
    let call: ClientReadableStream<unknown> | undefined;
    let stepsWhenClientCancelled = -1;
    const doomed = generate(
      h.client,
      { prompt: 'a red circle', numImages: 16, seed: 1n },
      {
        onCall: (c) => (call = c),
        onProgress: (p) => {
          if (stepsWhenClientCancelled < 0 && p.tokensDone[0]! >= 4) {
            stepsWhenClientCancelled = h.steps.length;
            call!.cancel();
          }
        },
      },
    );
    const survivor = generate(h.client, { prompt: 'a blue square', numImages: 16, seed: 2n });
    await assert.rejects(doomed, code(status.CANCELLED));
    const ok = await survivor;
    assert.equal(ok.images.length, 16, 'the other request in the same batch is unaffected');
    await waitFor(() => stepsWhenServerSawCancel >= 0, 'the server to see the cancel');
    const steps = h.steps.slice(first);
    // Both requests shared one session: 32 rows per forward pass until the cancel, 16 after it.
    const shared = steps.filter((s) => s.jobs.length === 2);
    assert.ok(
      shared.length >= 4 && shared.every((s) => s.rows === 32),
      `shared steps: ${shared.map((s) => s.rows)}`,
    );
    const afterServer = h.steps.slice(stepsWhenServerSawCancel);
    assert.ok(
      afterServer.every((s) => s.jobs.length === 1 && s.rows === 16),
      'no forward pass computed a cancelled row after the server saw the cancel',
    );
    // From the client's cancel() to the server seeing it: at most the one step already running plus one.
    assert.ok(
      stepsWhenServerSawCancel - stepsWhenClientCancelled <= 2,
      `${stepsWhenServerSawCancel - stepsWhenClientCancelled} steps between cancel() and the server noticing`,
    );
    assert.ok(shared.length < TOKENS, `cancelled after ${shared.length} of ${TOKENS} tokens`);
    assert.equal(steps.length, TOKENS, 'the survivor needed exactly one forward pass per token');
  });
});

test('sampler: a deadline stops generation (DEADLINE_EXCEEDED) and no step runs after it', async () => {
  await withSampler({}, async (h) => {
    // Half of what the same request takes in full here (machines and backends differ several-fold),
    // timed warm: the first request also pays for kernel compilation and would set the deadline too late.
    let full = Infinity;
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      await generate(h.client, { prompt: 'a red circle', numImages: 16 });
      full = Math.min(full, performance.now() - t0);
    }
    const first = h.steps.length;
    await assert.rejects(
      generate(h.client, { prompt: 'a red circle', numImages: 16 }, { deadline: Date.now() + full / 2 }),
      code(status.DEADLINE_EXCEEDED),
    );
    await waitFor(
      () => h.outcomes.some((o) => o.code === status.DEADLINE_EXCEEDED),
      'the server to end the request',
    );
    const stepsAtEnd = h.steps.length;
    await sleep(300);
    assert.equal(h.steps.length, stepsAtEnd, 'generation stopped');
    const ran = stepsAtEnd - first;
    assert.ok(ran > 0 && ran < TOKENS, `${ran} of ${TOKENS} token steps ran before the deadline`);
  });
});

test('sampler: concurrent requests share forward passes (batched token steps)', async () => {
  // A wide batch window: on a loaded 2-core machine four calls can reach the server tens of ms apart.
  await withSampler({ scheduler: { batchWindowMs: 250 } }, async (h) => {
    const first = h.steps.length;
    const rs = await Promise.all(
      [0, 1, 2, 3].map((i) =>
        generate(h.client, { prompt: 'a green triangle', numImages: 2, seed: BigInt(10 * i) }),
      ),
    );
    const passes = h.steps.length - first;
    assert.ok(
      passes <= 2 * TOKENS,
      `4 requests of ${TOKENS} tokens took ${passes} forward passes (unbatched: ${4 * TOKENS})`,
    );
    assert.ok(
      rs.every((r) => r.done.timings!.sharedSteps > 0),
      `shared steps per request: ${rs.map((r) => r.done.timings!.sharedSteps)}`,
    );
    assert.ok(h.steps.slice(first).some((s) => s.rows >= 4 && s.jobs.length >= 2));
  });
});

test('sampler: hot swap mid-stream (JetStream watch) keeps the stream intact; a failed load keeps the old model', async () => {
  const name = `swap-${process.pid}-${Date.now()}`;
  await withSampler({ store: 'nats', name }, async (h) => {
    const { bytes } = await makeTinyBundle({ overrides: GRID8 });
    let published: Promise<unknown> | undefined;
    const images: number[] = [];
    const r = await generate(
      h.client,
      { prompt: 'a large yellow circle', numImages: 16, seed: 3n },
      {
        onProgress: (p) => {
          // v2 lands while v1 is mid-way through this request.
          if (!published && p.tokensDone[0]! >= 1)
            published = h.models.publish(name, bytes, { preset: 'tiny', note: 'v2' });
        },
        onImage: (img) => images.push(img.index),
      },
    );
    assert.ok(published, 'v2 was published mid-stream');
    assert.equal(r.done.model?.version, 1, 'the stream finished on the model it started with');
    assert.equal(r.images.length, 16);
    assert.deepEqual(
      [...images].sort((a, b) => a - b),
      [...Array(16).keys()],
    );
    for (const img of r.images) assert.equal((await sharp(img.png).metadata()).width, 32);
    await h.svc.registry.waitForServing(2, 20_000);
    const swap = h.logs.find((l) => l.msg === 'model swapped');
    assert.ok(swap, JSON.stringify(h.logs));
    assert.equal(swap.fields?.version, 2);
    assert.equal(swap.fields?.inFlightOnPrevious, 1, 'swapped while the request held v1');
    await waitFor(
      () => h.logs.some((l) => l.msg === 'model released' && l.fields?.version === 1),
      'v1 released after its last request',
    );
    const next = await generate(h.client, { prompt: 'a large yellow circle', numImages: 1 });
    assert.equal(next.done.model?.version, 2);

    // v3 is garbage that still matches its sha256: the load fails, is logged, v2 keeps serving.
    await h.models.publish(name, new TextEncoder().encode('not a bundle'), { note: 'broken' });
    await waitFor(() => h.svc.registry.loadFailures.some((f) => f.version === 3), 'the v3 load to fail');
    const logged = h.logs.find((l) => l.level === 'error' && l.msg.startsWith('model load failed'));
    assert.equal(logged?.fields?.version, 3);
    assert.equal(logged?.fields?.serving, 2);
    assert.equal(await h.healthCheck(), 'SERVING');
    const still = await generate(h.client, { prompt: 'a small red square', numImages: 1 });
    assert.equal(still.done.model?.version, 2);
    // Pinning a version loads it beside the serving one.
    const pinned = await generate(h.client, {
      prompt: 'a small red square',
      numImages: 1,
      model: { name, version: 1 },
    });
    assert.equal(pinned.done.model?.version, 1);
  });
});

test('sampler: graceful shutdown drains in-flight requests and refuses new ones', async () => {
  await withSampler({}, async (h) => {
    let draining: Promise<void> | undefined;
    const inflight = generate(
      h.client,
      { prompt: 'a red circle', numImages: 8 },
      {
        onProgress: (p) => {
          if (!draining && p.tokensDone[0]! >= 2) draining = h.svc.shutdown(20_000);
        },
      },
    );
    await waitFor(() => draining !== undefined, 'shutdown to start');
    assert.equal(await h.healthCheck(), 'NOT_SERVING', 'a balancer stops routing here at once');
    await assert.rejects(
      generate(h.client, { prompt: 'late' }),
      (e: ServiceError) => e.code === status.UNAVAILABLE && /draining/.test(e.details),
    );
    const r = await inflight;
    assert.equal(r.images.length, 8, 'the in-flight request finished');
    await draining;
  });
  // With no grace left, what still runs is stopped as UNAVAILABLE (a client retries elsewhere).
  await withSampler({}, async (h) => {
    let draining: Promise<void> | undefined;
    const cut = generate(
      h.client,
      { prompt: 'a red circle', numImages: 16 },
      { onProgress: () => (draining ??= h.svc.shutdown(50)) },
    );
    await assert.rejects(
      cut,
      (e: ServiceError) => e.code === status.UNAVAILABLE && /shutdown/.test(e.details),
    );
    await draining;
  });
});
