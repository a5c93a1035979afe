// console: Debian's Chromium (driven by playwright-core) against a real stack: workers training a tiny run,
// a sampler waiting for its model, and `dalle console` in this process. The run page's progress advances, a
// sample grid appears after the first checkpoint, Pause pauses the workflow (Temporal says so and no step
// is taken), Resume resumes it, a SIGKILLed worker shows in the timeline with the checkpoint the run resumed
// from, the models page shows what the sampler serves, and the playground shows the images Generate
// streams. Screenshots and page-load timings go to $DALLE_HOME/console/.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Page } from 'playwright-core';
import { serviceEnv } from '../infra/services.ts';
import { consoleOptions } from '../services/console/env.ts';
import { startConsole, type RunningConsole } from '../services/console/server.ts';
import { ensureChromium, launchBrowser } from './fixtures/browser.ts';
import { CLI, dalle, progress, startWorker, temporal, waitFor, writeSpec } from './fixtures/cluster.ts';

const TOKEN = 'console-browser-test-token-0123456789';

function startSampler(model: string): { proc: ChildProcess; address: Promise<string>; log: string[] } {
  const proc = spawn(process.execPath, [CLI, 'sampler', '--port', '0', '--model', model], {
    env: { ...process.env, DALLE_BACKEND: 'wasm', DALLE_SAMPLER_ADDRESS: '127.0.0.1:50051' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log: string[] = [];
  const address = new Promise<string>((resolve, reject) => {
    proc.stderr!.on('data', (b: Buffer) => {
      log.push(b.toString());
      const m = /listening on (127\.0\.0\.1:\d+)/.exec(log.join(''));
      if (m) resolve(m[1]!);
    });
    proc.stdout!.on('data', (b: Buffer) => log.push(b.toString()));
    proc.once('exit', (c) => reject(new Error(`sampler exited (${c}): ${log.join('')}`)));
  });
  return { proc, address, log };
}

// Functions below run in the page (Playwright sends their source over the DevTools protocol, which the
// console's Content-Security-Policy allows, unlike strings it would eval). This project's tsconfig has no DOM
// types, so the browser's globals are reached through `globalThis as any`.

/** What the page's Performance API says about its own load. */
function navigationTiming() {
  const perf = (globalThis as any).performance;
  const n = perf.getEntriesByType('navigation')[0];
  const res = perf.getEntriesByType('resource') as { transferSize: number }[];
  return {
    domContentLoadedMs: Math.round(n.domContentLoadedEventEnd as number),
    loadMs: Math.round(n.loadEventEnd as number),
    transferBytes: (n.transferSize as number) + res.reduce((a, r) => a + r.transferSize, 0),
    requests: res.length + 1,
  };
}

/** At least `count` images match `selector` and decoded at least `width` pixels wide. */
function imagesLoaded([selector, count, width]: [string, number, number]): boolean {
  const imgs = [...(globalThis as any).document.querySelectorAll(selector)] as { naturalWidth: number }[];
  return imgs.filter((i) => i.naturalWidth >= width).length >= count;
}

/** Navigation timing of a load of `url`, and how long until `ready` shows. */
async function pageLoad(page: Page, url: string, ready: string) {
  const t0 = Date.now();
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForSelector(ready);
  const dataShownMs = Date.now() - t0;
  return { ...(await page.evaluate(navigationTiming)), dataShownMs };
}

const stepOf = async (page: Page) =>
  Number((await page.textContent('.facts .progress .label'))!.split('/')[0]);
/** Where the page says the run is: its stage and that stage's step (the step starts again at each stage). */
const positionOf = async (page: Page) => ({
  stage: await page.textContent('[data-stage]'),
  step: await stepOf(page),
});

test(
  'console: in Chromium, a tiny run advances, shows its grids, pauses and resumes; the playground generates',
  { timeout: 15 * 60_000 },
  async (t) => {
    ensureChromium();
    const out = join(serviceEnv().home, 'console');
    mkdirSync(out, { recursive: true });
    const tag = `${process.pid}-${Date.now()}`;
    const runId = `console-${tag}`;
    const model = `console-${tag}`.toLowerCase();
    // Long enough a dVAE stage to watch it and pause it; everything else as the tiny preset.
    const spec = writeSpec({ preset: 'tiny', modelName: model, dvae: { steps: 40 } });
    const sampler = startSampler(model);
    // w1 dies mid-segment in the transformer stage, as a lost machine would: the timeline must show it.
    const workers = [startWorker({}, 'w0'), startWorker({ DALLE_TEST_SIGKILL_AT: 'transformer:13' }, 'w1')];
    let consoleServer: RunningConsole | undefined;
    const ctx = await launchBrowser();
    const { client, close } = await temporal();
    const shot = (page: Page, name: string) =>
      page.screenshot({ path: join(out, `${name}.png`), fullPage: true });
    try {
      const options = consoleOptions(
        { address: '127.0.0.1:0', sampler: await sampler.address },
        { ...process.env, DALLE_CONSOLE_TOKEN: TOKEN },
      );
      consoleServer = await startConsole(options);
      const base = consoleServer.url;
      assert.equal(dalle(['train', '--config', spec, '--run-id', runId, '--detach']).code, 0);

      const page = ctx.pages()[0] ?? (await ctx.newPage());
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      // The token in the URL is taken into storage and removed from the address bar.
      await page.goto(`${base}?token=${TOKEN}#/runs/${runId}`);
      await page.waitForSelector('.facts .progress .label');
      assert.ok(!page.url().includes('token='), page.url());

      // 1. Progress advances on the page.
      await waitFor('the run to be training', async () => (await stepOf(page)) > 0, 3 * 60_000, 200);
      // On a quiet machine the tiny dVAE can finish between two refreshes of the page, so a later stage at a
      // lower step is progress too.
      const first = await positionOf(page);
      await waitFor(
        `the page to pass ${first.stage} step ${first.step}`,
        async () => {
          const now = await positionOf(page);
          return now.stage !== first.stage || now.step > first.step;
        },
        60_000,
        200,
      );

      // 2. A sample grid appears once the first checkpoint is committed.
      await page.waitForSelector('img.grid', { timeout: 60_000 });
      await page.waitForFunction(imagesLoaded, ['img.grid', 1, 1] as [string, number, number]);
      const gridStep = Number(await page.textContent('[data-sample-step]'));
      assert.ok(gridStep >= 5 && gridStep % 5 === 0, `grid at checkpoint step ${gridStep}`);
      await shot(page, 'run-training');

      // 3. Pause: the workflow says paused, and once the segment in flight ends no step is taken.
      await page.click('[data-action=pause]');
      await waitFor(
        'Temporal to report the run paused',
        async () => (await progress(client, runId))?.paused,
        30_000,
      );
      await page.waitForSelector('.status-paused');
      const settled = await waitFor(
        'the segment in flight to end',
        async () => {
          const a = await progress(client, runId);
          await new Promise((r) => setTimeout(r, 3000));
          const b = await progress(client, runId);
          // a pause takes effect at a segment boundary (tiny: every 10 steps); a step that is merely slow
          // under load is not the end of the segment
          return a && b && a.step === b.step && b.step % 10 === 0 ? b : undefined;
        },
        2 * 60_000,
        0,
      );
      await new Promise((r) => setTimeout(r, 3000));
      assert.equal((await progress(client, runId))!.step, settled.step, 'a paused run took a step');
      assert.equal(settled.step % 10, 0, `paused at a segment boundary, step ${settled.step}`);
      await shot(page, 'run-paused');

      // 4. Resume: steps are taken again, and the run finishes.
      await page.click('[data-action=resume]');
      await waitFor(
        'steps after resume',
        async () => {
          const p = await progress(client, runId);
          return p && (p.stage !== 'dvae' || p.step > settled.step);
        },
        60_000,
      );

      // 5. A worker dies; a new one takes its place; the timeline says what failed and where it resumed.
      const victim = workers[1]!;
      await waitFor(
        'w1 to die at transformer step 13',
        async () => victim.proc.signalCode === 'SIGKILL',
        5 * 60_000,
      );
      workers.push(startWorker({}, "w1'"));
      await client.workflow.getHandle(runId).result();
      await page.waitForSelector('.status-completed', { timeout: 30_000 });
      await page.waitForSelector('.timeline .kind-restart');
      const resumed = await page.textContent('.timeline .tl-resume');
      assert.match(resumed ?? '', /transformer resumes from checkpoint 10 .*\(resumed from step 10\)/);
      await page.click('button.tab >> text=transformer samples').catch(() => undefined);
      await page.waitForFunction(imagesLoaded, ['img.grid', 1, 1] as [string, number, number]);
      await shot(page, 'run');

      // 6. Models: the sampler serves the run's model once it has loaded it.
      await page.goto(`${base}#/models`);
      await page.waitForSelector(`[data-model="${model}"] [data-serving]`, { timeout: 90_000 });
      await shot(page, 'models');

      // 7. Playground: images appear as Generate streams them.
      await page.goto(`${base}#/playground`);
      await page.fill('.prompt textarea', 'a large blue circle at the center');
      await page.fill('.knobs input[type=number] >> nth=0', '3');
      await page.click('[data-action=generate]');
      await page.waitForFunction(imagesLoaded, ['img[data-image]', 3, 16] as [string, number, number], {
        timeout: 60_000,
      });
      await shot(page, 'playground');

      // 8. Page load of the runs view until its table shows: cold (a new browser profile), then warm.
      const cold = await launchBrowser();
      try {
        const tab = cold.pages()[0] ?? (await cold.newPage());
        const timings = {
          cold: await pageLoad(tab, `${base}#/runs`, `tr[data-run="${runId}"]`),
          warm: await pageLoad(await cold.newPage(), `${base}#/runs`, `tr[data-run="${runId}"]`),
        };
        await shot(tab, 'runs');
        writeFileSync(join(out, 'timings.json'), JSON.stringify(timings, null, 2));
        t.diagnostic(`page load: ${JSON.stringify(timings)}`);
      } finally {
        await cold.close();
      }
      assert.deepEqual(errors, [], 'the page threw');
    } catch (e) {
      // What the page showed when the test gave up.
      const open = ctx.pages()[0];
      if (open) await shot(open, 'failure').catch(() => undefined);
      for (const w of workers) t.diagnostic(w.output.slice(-30).join('\n'));
      t.diagnostic(sampler.log.join('').slice(-3000));
      throw e;
    } finally {
      await ctx.close();
      await consoleServer?.close();
      sampler.proc.kill('SIGTERM');
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
      await close();
    }
  },
);
