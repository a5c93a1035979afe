// console: the HTTP layer without a socket (Hono's app.request). Everything here is decided before the
// cluster is touched, or is the answer the console gives when a service is down: the cluster points at
// closed ports.
import assert from 'node:assert/strict';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { connectCluster } from './cluster.ts';
import { consoleOptions, isLoopback, type ConsoleOptions } from './env.ts';
import { createConsoleApp } from './server.ts';
import { buildAssets } from './web-bundle.ts';

const TOKEN = 'a-console-token-for-tests-0123456789';
const home = mkdtempSync(join(tmpdir(), 'console-'));
const down = { TEMPORAL_ADDRESS: '127.0.0.1:1', NATS_URL: 'nats://127.0.0.1:1', DALLE_HOME: home };
const assets = await buildAssets();

function app(over: Partial<ConsoleOptions> = {}) {
  const options = { ...consoleOptions({}, { ...down, DALLE_CONSOLE_TOKEN: TOKEN }), ...over };
  const cluster = connectCluster('127.0.0.1:1', {
    temporalAddress: '127.0.0.1:1',
    temporalNamespace: 'default',
    natsUrl: 'nats://127.0.0.1:1',
    home,
  });
  return { app: createConsoleApp({ options, cluster, assets }), cluster };
}

const HOST = { host: '127.0.0.1:8090' };
const auth = (t = TOKEN) => ({ ...HOST, authorization: `Bearer ${t}` });

test('console: run controls need the bearer token; a down Temporal is a 503 naming it', async () => {
  const { app: a, cluster } = app();
  try {
    const none = await a.request('/api/runs/r1/pause', { method: 'POST', headers: HOST });
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate')!, /^Bearer/);
    assert.match(((await none.json()) as { message: string }).message, /console token/);
    const wrong = await a.request('/api/runs/r1/resume', { method: 'POST', headers: auth('x'.repeat(20)) });
    assert.equal(wrong.status, 403);
    const ws = await a.request('/api/runs/r1/world-size', {
      method: 'POST',
      headers: { ...auth(), 'content-type': 'application/json' },
      body: JSON.stringify({ world_size: 0 }),
    });
    assert.equal(ws.status, 400);
    assert.deepEqual(await ws.json(), {
      error: 'invalid_argument',
      message: 'world_size: Too small: expected number to be >=1',
      field: 'world_size',
    });
    const ok = await a.request('/api/runs/r1/pause', { method: 'POST', headers: auth() });
    assert.equal(ok.status, 503);
    const body = (await ok.json()) as { service: string; message: string };
    assert.equal(body.service, 'temporal');
    assert.match(body.message, /temporal at 127\.0\.0\.1:1 is unreachable/);
  } finally {
    await cluster.close();
  }
});

test('console: on loopback a request naming another host is refused (DNS rebinding)', async () => {
  const { app: a, cluster } = app();
  try {
    const evil = await a.request('/api/runs', { headers: { host: 'attacker.example:8090' } });
    assert.equal(evil.status, 403);
    assert.match(((await evil.json()) as { message: string }).message, /not a loopback name/);
    for (const host of ['localhost:8090', '[::1]:8090', '127.0.0.1']) {
      const r = await a.request('/api/runs', { headers: { host } });
      assert.equal(r.status, 503, host); // past the check, to the (down) cluster
    }
  } finally {
    await cluster.close();
  }
});

test('console: beyond loopback every API call needs the token, the page itself does not', async () => {
  const { app: a, cluster } = app({ host: '0.0.0.0', loopback: false });
  try {
    assert.equal((await a.request('/', { headers: { host: 'console.example' } })).status, 200);
    assert.equal((await a.request('/api/runs', { headers: { host: 'console.example' } })).status, 401);
    assert.equal((await a.request('/api/models', { headers: { host: 'console.example' } })).status, 401);
    const r = await a.request('/api/auth', {
      headers: { host: 'console.example', authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(r.status, 204);
  } finally {
    await cluster.close();
  }
});

test('console: Generate bodies are checked by the sampler schema before any call is made', async () => {
  const { app: a, cluster } = app();
  const gen = async (body: unknown) => {
    const r = await a.request('/api/generate', {
      method: 'POST',
      headers: { ...HOST, 'content-type': 'application/json' },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    return { status: r.status, body: (await r.json()) as { error: string; message: string; field?: string } };
  };
  try {
    const cases: [unknown, string, RegExp][] = [
      [
        { prompt: 'a red circle', num_images: 17 },
        'num_images',
        /^num_images: must be between 1 and 16, got 17$/,
      ],
      [{ prompt: '   ' }, 'prompt', /^prompt: must not be empty$/],
      [{ prompt: 'x', temperature: 0 }, 'temperature', /must be in \(0, 10\], got 0/],
      [{ prompt: 'x', top_p: 1.5 }, 'top_p', /must be in \(0, 1\], got 1.5/],
      [{ prompt: 'x', seed: 2 ** 32 }, 'seed', /must be < 2\^32/],
      [{ prompt: 'x', seed: 'seven' }, 'seed', /decimal integer/],
      [{ prompt: 'x', candidates: 0 }, 'candidates', /an integer ≥ 1, got 0/],
      [{ prompt: 'x', guidance_scale: -1 }, 'guidance_scale', /must be in \[0, /],
      [{ prompt: 'x', numImages: 2 }, 'numImages', /unknown field/],
      [{ prompt: 'x', model: { name: 'Bad Name' } }, 'model.name', /must match/],
      [{ num_images: 2 }, 'prompt', /expected string/],
      ['{not json', '(body)', /must be a JSON object/],
    ];
    for (const [body, field, message] of cases) {
      const r = await gen(body);
      assert.equal(r.status, 400, JSON.stringify(body));
      assert.equal(r.body.field ?? '(body)', field, JSON.stringify(r.body));
      assert.match(r.body.message, message);
    }
    // A valid request reaches for the sampler, which is not there.
    const r = await gen({ prompt: 'a large red circle at the center', num_images: 2, seed: '7' });
    assert.equal(r.status, 503);
    assert.match(r.body.message, /sampler at 127\.0\.0\.1:1 is unreachable/);
  } finally {
    await cluster.close();
  }
});

test('console: path parameters are validated and named', async () => {
  const { app: a, cluster } = app();
  try {
    const bad = async (path: string, field: string) => {
      const r = await a.request(path, { headers: HOST });
      assert.equal(r.status, 400, path);
      assert.equal(((await r.json()) as { field: string }).field, field, path);
    };
    await bad('/api/runs/bad%20id', 'id');
    await bad('/api/runs/r1/curves/vqgan', 'stage');
    await bad('/api/runs/r1/samples/dvae/-5', 'step');
    await bad('/api/runs/r1/samples/dvae/five', 'step');
    assert.equal((await a.request('/api/nothing', { headers: HOST })).status, 404);
  } finally {
    await cluster.close();
  }
});

test('console: the page is served gzipped with a validator; a repeat visit gets 304', async () => {
  const { app: a, cluster } = app();
  try {
    const js = await a.request('/app.js', { headers: { ...HOST, 'accept-encoding': 'gzip, br' } });
    assert.equal(js.status, 200);
    assert.equal(js.headers.get('content-encoding'), 'gzip');
    const body = gunzipSync(Buffer.from(await js.arrayBuffer())).toString();
    assert.match(body, /uPlot|u-title/, 'the chart library is bundled in');
    const again = await a.request('/app.js', {
      headers: { ...HOST, 'if-none-match': js.headers.get('etag')! },
    });
    assert.equal(again.status, 304);
    const html = await (await a.request('/', { headers: HOST })).text();
    assert.match(html, /<script type="module" src="\/app.js">/);
    const csp = (await a.request('/', { headers: HOST })).headers.get('content-security-policy')!;
    assert.match(csp, /default-src 'self'/);
  } finally {
    await cluster.close();
  }
});

test('console: options name the variable that is wrong; a generated token is private to its owner', () => {
  const env = (over: Record<string, string>) => ({ ...down, ...over });
  assert.throws(
    () => consoleOptions({}, env({ DALLE_CONSOLE_ADDRESS: 'nope' })),
    /^ConsoleConfigError: DALLE_CONSOLE_ADDRESS: must be host:port/,
  );
  assert.throws(
    () => consoleOptions({ address: '127.0.0.1:70000' }, down),
    /--address: port must be ≤ 65535/,
  );
  assert.throws(
    () => consoleOptions({}, env({ DALLE_CONSOLE_TOKEN: 'short' })),
    /DALLE_CONSOLE_TOKEN: must be at least 16/,
  );
  assert.throws(
    () => consoleOptions({}, env({ DALLE_CONSOLE_TLS_CERT: '/x.pem' })),
    /DALLE_CONSOLE_TLS_KEY: HTTPS needs both/,
  );
  assert.throws(
    () => consoleOptions({}, env({ DALLE_CONSOLE_TRACE_URL: 'http://jaeger/trace/' })),
    /DALLE_CONSOLE_TRACE_URL: must contain \{traceId\}/,
  );
  assert.throws(
    () => consoleOptions({}, env({ DALLE_CONSOLE_TOKEN_FILE: '/nonexistent/token' })),
    /DALLE_CONSOLE_TOKEN_FILE: cannot read/,
  );
  const o = consoleOptions({}, down);
  assert.equal(o.tokenSource, 'generated');
  assert.equal(statSync(join(home, 'console.token')).mode & 0o777, 0o600);
  assert.deepEqual([o.host, o.port, o.loopback], ['127.0.0.1', 8090, true]);
  assert.equal(o.temporalUi, 'http://127.0.0.1:1001');
  assert.deepEqual(
    ['127.0.0.1', '127.3.4.5', 'localhost', '::1', '[::1]', '0.0.0.0', '10.0.0.1', 'example.com'].map(
      isLoopback,
    ),
    [true, true, true, true, true, false, false, false],
  );
});
