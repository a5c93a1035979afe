// workers: `dalle worker --exit-when-idle S` (a worker started for a task-queue backlog) polls the real
// Temporal server, and once nothing has run in it for S seconds it stops by itself with exit code 0, the
// way a Job's worker leaves when the backlog it came for is done.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startWorker, waitFor } from './fixtures/cluster.ts';

test('workers: a worker started with --exit-when-idle leaves by itself, exit 0, once idle', async (t) => {
  const spawned = Date.now();
  const w = startWorker({}, 'idle', ['--exit-when-idle', '2', '--task-queue', `idle-${process.pid}`]);
  try {
    await waitFor('the worker to poll', async () => w.output.some((l) => l.includes('polling')), 120_000);
    const polled = Date.now();
    t.diagnostic(`polling ${((polled - spawned) / 1000).toFixed(1)} s after the process was spawned`);
    const code = await new Promise<number | null>((res) => {
      if (w.proc.exitCode !== null) return res(w.proc.exitCode);
      w.proc.once('exit', (c) => res(c));
    });
    const after = (Date.now() - polled) / 1000;
    assert.equal(code, 0, w.output.join('\n'));
    assert.ok(
      w.output.some((l) => l.includes('idle for 2 s: stopping')),
      w.output.join('\n'),
    );
    assert.ok(after >= 1, `stopped ${after} s after it started polling: not before it was idle 2 s`);
  } finally {
    await w.kill();
  }
});
