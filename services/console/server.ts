// The console's HTTP server (Hono on Node's http/https): the page, and a JSON API over the cluster.
//
//   GET  /api/runs                          every trainDalle run, newest first, with live figures
//   GET  /api/runs/:id                      one run: progress, spec, timeline, checkpoints, sample grids, links
//   GET  /api/runs/:id/curves/:stage        per-step curves of a stage (dvae | transformer)
//   GET  /api/runs/:id/samples/:stage/:step the sample grid of a checkpoint (PNG)
//   POST /api/runs/:id/pause | resume       run controls (bearer token)
//   POST /api/runs/:id/world-size           {"world_size": W} (bearer token)
//   GET  /api/models                        published models and what the sampler serves
//   POST /api/generate                      Generate as JSON, or server-sent events with Accept: text/event-stream
//   GET  /api/auth                          204 when the bearer token is right (lets the page check one)
//
// Why Hono: a small, dependency-free framework on the web-standard Request/Response, maintained and widely
// used, with server-sent events, secure headers and bearer auth built in; handlers stay plain functions that
// tests can call without a socket (`app.request`).
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { secureHeaders } from 'hono/secure-headers';
import { z } from 'zod';
import { pauseSignal, resumeSignal, setWorldSizeSignal } from '../../contract/index.ts';
import type { RunDetail } from './api-types.ts';
import { loopbackHostOnly, requireToken } from './auth.ts';
import { connectCluster, ServiceUnavailableError, type ConsoleCluster } from './cluster.ts';
import type { ConsoleOptions } from './env.ts';
import { handleGenerate } from './generate-http.ts';
import { HttpError } from './http-error.ts';
import { modelsView } from './models.ts';
import { listCheckpoints, listSamples, readCurves, readSamples, stageTotals, STAGES } from './run-store.ts';
import { RunNotFoundError, RunReader } from './runs.ts';
import { buildAssets, type Assets } from './web-bundle.ts';

const RunId = z.string().regex(/^[A-Za-z0-9_-]{1,200}$/, 'must be letters, digits, - and _');
const RunParams = z.strictObject({ id: RunId });
const SampleParams = z.strictObject({
  id: RunId,
  stage: z.enum(STAGES),
  step: z.coerce.number().int().positive(),
});
const CurveParams = z.strictObject({ id: RunId, stage: z.enum(STAGES) });
const WorldSizeBody = z.strictObject({ world_size: z.number().int().min(1).max(4096) });

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const i = r.error.issues[0]!;
  const field = i.path.join('.') || (i.code === 'unrecognized_keys' ? i.keys.join(', ') : what);
  throw new HttpError(400, 'invalid_argument', `${field}: ${i.message}`, field);
}

async function jsonBody(c: Context): Promise<unknown> {
  return c.req.json().catch(() => {
    throw new HttpError(400, 'invalid_argument', '(body): must be a JSON object');
  });
}

export interface ConsoleDeps {
  options: ConsoleOptions;
  cluster: ConsoleCluster;
  assets: Assets;
}

function errorResponse(c: Context, e: unknown): Response {
  if (e instanceof HttpError)
    return c.json({ error: e.code, message: e.message, ...(e.field ? { field: e.field } : {}) }, e.status);
  if (e instanceof ServiceUnavailableError)
    return c.json({ error: 'unavailable', service: e.service, message: e.message }, 503);
  if (e instanceof RunNotFoundError) return c.json({ error: 'not_found', message: e.message }, 404);
  console.error('[console]', e);
  return c.json({ error: 'internal', message: e instanceof Error ? e.message : String(e) }, 500);
}

/** Run controls: signal a running run's root workflow. */
function controls(app: Hono, deps: ConsoleDeps, runs: RunReader): void {
  const running = async (c: Context) => {
    const { id } = parse(RunParams, c.req.param(), 'run');
    const detail = await runs.detail(id);
    if (detail.status !== 'running')
      throw new HttpError(
        409,
        'not_running',
        `run '${id}' is ${detail.status}; only a running run takes controls`,
      );
    return { detail, handle: (await deps.cluster.temporal()).workflow.getHandle(id) };
  };
  app.post('/api/runs/:id/pause', async (c) => {
    const { handle, detail } = await running(c);
    await handle.signal(pauseSignal);
    return c.json({ runId: detail.runId, signal: 'pause' });
  });
  app.post('/api/runs/:id/resume', async (c) => {
    const { handle, detail } = await running(c);
    await handle.signal(resumeSignal);
    return c.json({ runId: detail.runId, signal: 'resume' });
  });
  app.post('/api/runs/:id/world-size', async (c) => {
    const { world_size } = parse(WorldSizeBody, await jsonBody(c), 'body');
    const { handle, detail } = await running(c);
    const batch = detail.start.spec?.train.batchSize;
    if (batch !== undefined && batch % world_size !== 0)
      throw new HttpError(
        400,
        'invalid_argument',
        `world_size: must divide the global batch ${batch}, got ${world_size}`,
        'world_size',
      );
    await handle.signal(setWorldSizeSignal, world_size);
    return c.json({ runId: detail.runId, signal: 'setWorldSize', worldSize: world_size });
  });
}

function runRoutes(app: Hono, deps: ConsoleDeps, runs: RunReader): void {
  const { options } = deps;
  app.get('/api/runs', async (c) => c.json({ runs: await runs.list() }));
  app.get('/api/runs/:id', async (c) => {
    const { id } = parse(RunParams, c.req.param(), 'run');
    const detail = await runs.detail(id);
    const { checkpoints: ck } = await deps.cluster.stores();
    const checkpoints = await listCheckpoints(ck, id);
    const ns = deps.cluster.env.temporalNamespace;
    const sampleCost = await Promise.all(
      STAGES.filter((s) => checkpoints.some((c) => c.stage === s)).map(async (stage) => {
        const newest = checkpoints.filter((c) => c.stage === stage).at(-1)!.step;
        const { grids, sampleSeconds, stepSeconds } = await stageTotals(ck, id, stage, newest);
        return { stage, grids, sampleSeconds, stepSeconds };
      }),
    );
    const body: RunDetail = {
      ...detail,
      checkpoints,
      samples: await listSamples(ck, id, checkpoints),
      sampleCost,
      links: {
        temporal: `${options.temporalUi}/namespaces/${encodeURIComponent(ns)}/workflows/${encodeURIComponent(id)}`,
        trace: detail.start.traceId ? options.traceUrl.replace('{traceId}', detail.start.traceId) : null,
      },
    };
    return c.json(body);
  });
  app.get('/api/runs/:id/curves/:stage', async (c) => {
    const { id, stage } = parse(CurveParams, c.req.param(), 'path');
    return c.json(await readCurves((await deps.cluster.stores()).checkpoints, id, stage));
  });
  app.get('/api/runs/:id/samples/:stage/:step', async (c) => {
    const { id, stage, step } = parse(SampleParams, c.req.param(), 'path');
    const grid = await readSamples((await deps.cluster.stores()).checkpoints, id, stage, step);
    if (!grid)
      throw new HttpError(404, 'not_found', `run '${id}' has no ${stage} sample grid at step ${step}`);
    const etag = `"${grid.sha256}"`;
    if (c.req.header('if-none-match') === etag) return c.body(null, 304);
    return c.body(Buffer.from(grid.png), 200, {
      'content-type': 'image/png',
      etag,
      'cache-control': 'no-cache',
    });
  });
}

function pageRoutes(app: Hono, assets: Assets): void {
  for (const [path, a] of Object.entries(assets)) {
    app.get(path, (c) => {
      if (c.req.header('if-none-match') === a.etag) return c.body(null, 304);
      const gz = /\bgzip\b/.test(c.req.header('accept-encoding') ?? '');
      return c.body(Buffer.from(gz ? a.gzip : a.body), 200, {
        'content-type': a.type,
        etag: a.etag,
        'cache-control': 'no-cache',
        vary: 'accept-encoding',
        ...(gz ? { 'content-encoding': 'gzip' } : {}),
      });
    });
  }
}

/** The console's routes over a cluster. */
export function createConsoleApp(deps: ConsoleDeps): Hono {
  const { options, cluster } = deps;
  const runs = new RunReader(
    () => cluster.temporal(),
    async () => (await cluster.stores()).checkpoints,
  );
  const app = new Hono();
  app.onError((e, c) => errorResponse(c, e));
  app.notFound((c) => c.json({ error: 'not_found', message: `no route ${c.req.method} ${c.req.path}` }, 404));
  app.use(
    secureHeaders({
      contentSecurityPolicy: {
        defaultSrc: ["'self'"],
        imgSrc: ["'self'", 'data:', 'blob:'],
        styleSrc: ["'self'", "'unsafe-inline'"],
        frameAncestors: ["'none'"],
      },
      crossOriginEmbedderPolicy: false,
      // HSTS only means something over HTTPS (and would pin a loopback name to it).
      strictTransportSecurity: !!options.tls,
    }),
  );
  if (options.loopback) app.use(loopbackHostOnly());
  const auth = requireToken(options.token);
  app.use('/api/runs/:id/pause', auth);
  app.use('/api/runs/:id/resume', auth);
  app.use('/api/runs/:id/world-size', auth);
  app.use('/api/auth', auth);
  if (!options.loopback) app.use('/api/*', auth);
  app.get('/api/auth', (c) => c.body(null, 204));
  app.get('/api/config', (c) =>
    c.json({
      temporalUi: options.temporalUi,
      samplerAddress: options.samplerAddress,
      tokenForReads: !options.loopback,
    }),
  );
  runRoutes(app, deps, runs);
  controls(app, deps, runs);
  app.get('/api/models', async (c) => c.json(await modelsView(cluster, (await cluster.stores()).models)));
  app.post('/api/generate', (c) => handleGenerate(c, cluster.sampler(), cluster.samplerAddress));
  pageRoutes(app, deps.assets);
  return app;
}

export interface RunningConsole {
  /** The page's URL (without the token). */
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Builds the page, connects lazily to the cluster and listens. */
export async function startConsole(options: ConsoleOptions): Promise<RunningConsole> {
  const assets = await buildAssets();
  const cluster = connectCluster(options.samplerAddress);
  const app = createConsoleApp({ options, cluster, assets });
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve(
      {
        fetch: app.fetch,
        hostname: options.host,
        port: options.port,
        ...(options.tls ? { createServer: createHttps, serverOptions: options.tls } : {}),
      },
      () => resolve(s),
    );
    s.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        e.code === 'EADDRINUSE'
          ? new Error(`${options.host}:${options.port} is already in use (give the console another --port)`)
          : e,
      ),
    );
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `${options.tls ? 'https' : 'http'}://${host}:${port}/`,
    port,
    async close() {
      await new Promise<void>((res) => {
        server.close(() => res());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await cluster.close();
    },
  };
}
