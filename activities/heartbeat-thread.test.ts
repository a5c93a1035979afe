// The worker's heartbeat thread against the suite's real Temporal server: it connects on its own, asks the
// server about a registered activity, and when it dies another takes over the registered activities.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { temporalSecurity } from '../security/settings.ts';
import { HeartbeatThread, type ProbeAnswer, type Vouching } from './heartbeat-thread.ts';

/** Probes until the thread is connected (it loads and connects the Temporal client after it starts). */
async function answerFromServer(v: Vouching, timeoutMs = 60_000): Promise<ProbeAnswer> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const a = await v.probe();
    if (a.alive || !['not connected', 'no helper thread'].includes(a.name ?? '')) return a;
    assert.ok(Date.now() < deadline, `no answer from the server: ${a.name}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

test('heartbeat thread: asks the server, and a thread that dies is replaced with its activities', async (t) => {
  const logs: string[] = [];
  const thread = HeartbeatThread.start(temporalSecurity(), (m) => logs.push(m));
  try {
    const shared = new Float64Array(new SharedArrayBuffer(3 * 8));
    shared[0] = Date.now();
    // A task token the server never issued: the server's answer is "no", never a hang or a crash.
    const v = thread.register(
      { taskToken: new Uint8Array([1, 2, 3]), shared: shared.buffer, intervalMs: 60_000, stallMs: 60_000 },
      () => undefined,
    );
    const first = await answerFromServer(v);
    assert.equal(first.alive, false);
    t.diagnostic(`the server's answer: ${first.name}`);

    await thread.crashForTest();
    assert.deepEqual(await v.probe(), { alive: false, name: 'no helper thread' });
    const again = await answerFromServer(v);
    assert.deepEqual(again, first, 'the new thread knows the registered activity');
    assert.equal(thread.restartCount, 1);
    assert.match(logs.join('\n'), /heartbeat thread exited; starting another/);

    v.remove();
    assert.deepEqual(await v.probe(), { alive: false, name: 'no helper thread' });
  } finally {
    await thread.close();
  }
});
