// event-writer: backpressure over a real grpc-js loopback call. A Sampler/Generate handler made of the
// EventWriter alone sends large image events to a client that stops reading: the writer must wait for
// 'drain' (never buffer without bound), coalesce progress while blocked, and deliver everything in order
// once the client reads again.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import {
  SamplerClient,
  SamplerService as SamplerDefinition,
  type GenerateEvent,
  type GenerateRequest,
} from '../../proto/gen/dalle/v1/sampler.ts';
import { EventWriter } from './event-writer.ts';
import { serverChannelOptions } from './server.ts';

test('event-writer: waits for drain when the client reads slowly, coalesces progress, keeps order', async () => {
  const IMAGES = 48;
  const PNG_BYTES = 256 * 1024; // 12 MiB in all: far beyond HTTP/2 windows and socket buffers
  const seen: { buffered: number[]; writer?: EventWriter; finished?: Promise<void> } = { buffered: [] };
  const server = new grpc.Server(serverChannelOptions);
  server.addService(SamplerDefinition, {
    generate: (call: grpc.ServerWritableStream<GenerateRequest, GenerateEvent>) => {
      const w = new EventWriter(call, 0);
      seen.writer = w;
      seen.finished = (async () => {
        for (let i = 0; i < IMAGES; i++) {
          // Several token steps' progress per image, as the service produces them.
          for (let k = 0; k < 4; k++) w.progress({ tokensDone: [i], tokensTotal: IMAGES, queuePosition: k });
          await w.send({
            event: {
              $case: 'image',
              value: {
                index: i,
                seed: BigInt(i),
                png: Buffer.alloc(PNG_BYTES, i),
                width: 1,
                height: 1,
                tokens: [],
                score: 0,
                candidate: 0,
              },
            },
          });
          seen.buffered.push(call.writableLength);
        }
        await w.send({
          event: { $case: 'done', value: { model: { name: 'm', version: 1 }, timings: undefined } },
        });
        w.end();
      })();
    },
    listModels: (_call: unknown, cb: grpc.sendUnaryData<never>) => cb({ code: grpc.status.UNIMPLEMENTED }),
  });
  const port = await new Promise<number>((res, rej) =>
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))),
  );
  const client = new SamplerClient(`127.0.0.1:${port}`, grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 8 * 1024 * 1024,
  });
  try {
    const call = client.generate({ prompt: 'x', model: undefined });
    const got: GenerateEvent[] = [];
    call.on('data', (e: GenerateEvent) => got.push(e));
    const ended = new Promise<void>((res, rej) => (call.on('end', res), call.on('error', rej)));
    // Read one event, then stop reading for a while.
    await new Promise<void>((r) => call.once('data', () => r()));
    call.pause();
    await new Promise((r) => setTimeout(r, 500));
    const w = seen.writer!;
    assert.ok(w.stats.drainWaits > 0, 'the writer waited for drain while the client did not read');
    const sentWhilePaused = seen.buffered.length;
    assert.ok(
      sentWhilePaused < IMAGES / 2,
      `only ${sentWhilePaused} of ${IMAGES} images got past a stalled reader`,
    );
    assert.ok(
      Math.max(...seen.buffered) <= 17,
      `stream buffer stays bounded (max ${Math.max(...seen.buffered)} events)`,
    );
    call.resume();
    await ended;
    await seen.finished;
    const images = got
      .filter((e) => e.event?.$case === 'image')
      .map((e) => (e.event as { value: { index: number; png: Buffer } }).value);
    assert.deepEqual(
      images.map((i) => i.index),
      [...Array(IMAGES).keys()],
      'every image, in order',
    );
    assert.ok(images.every((i) => i.png.length === PNG_BYTES && i.png[0] === i.index));
    assert.equal(got.at(-1)?.event?.$case, 'done');
    assert.ok(w.stats.progressSuperseded > 0, 'progress was coalesced while blocked, not queued');
    // Progress never runs ahead of the images it describes.
    let lastImage = -1;
    for (const e of got) {
      if (e.event?.$case === 'image') lastImage = e.event.value.index;
      if (e.event?.$case === 'progress') assert.ok(e.event.value.tokensDone[0]! <= lastImage + 1);
    }
  } finally {
    client.close();
    server.forceShutdown();
  }
});
