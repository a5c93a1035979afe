// `dalle generate "<prompt>" [-n 4] [--seed 7] [--out dir] [--server host:port] [--json]`: calls
// dalle.v1.Sampler/Generate, shows a progress bar on stderr, writes each image and a grid PNG.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { command, parseCommand, readers, type OptionValues } from './args.ts';
import { commands } from './commands.ts';

export const cli = command({
  name: 'generate',
  summary: commands.generate.summary,
  positionals: '"<prompt>"',
  options: {
    n: { type: 'string', short: 'n', value: 'N', help: 'images for the prompt (default 4)' },
    seed: {
      type: 'string',
      value: 'S',
      help: 'seed of the first image (image i uses S + i); default random',
    },
    out: {
      type: 'string',
      value: 'dir',
      help: 'folder for the PNGs (default $DALLE_HOME/outputs/<time>-<prompt>)',
    },
    server: {
      type: 'string',
      value: 'host:port',
      help: 'the sampler (default DALLE_SAMPLER_ADDRESS or 127.0.0.1:50051)',
    },
    model: {
      type: 'string',
      value: 'name[@version]',
      help: "model and version (default: the sampler's, latest)",
    },
    temperature: { type: 'string', value: 'T', help: 'sampling temperature (default 1)' },
    'top-k': { type: 'string', value: 'K', help: 'keep the K most likely tokens (default 0: all)' },
    'top-p': { type: 'string', value: 'P', help: 'nucleus: keep tokens up to probability P (default 1)' },
    'guidance-scale': {
      type: 'string',
      value: 'S',
      help: 'classifier-free guidance: logits u + S·(c − u) against the empty caption (default 1: none)',
    },
    candidates: {
      type: 'string',
      value: 'N',
      help: "sample N per image and keep the one the model's reranker scores best (default 1)",
    },
    timeout: { type: 'string', value: 'seconds', help: 'deadline of the call (default none)' },
    json: { type: 'boolean', help: 'print the files and timings as JSON' },
  },
});
const read = readers(cli);

/** `name`, `name@3` or `@3` → ModelRef. */
export function parseModelRef(v: string | undefined): { name: string; version?: number } | undefined {
  if (v === undefined) return undefined;
  const m = /^([a-z0-9][a-z0-9_-]*)?(?:@(\d+))?$/.exec(v);
  if (!m || (!m[1] && !m[2])) throw read.error(`--model must be name, name@version or @version, got '${v}'`);
  return { name: m[1] ?? '', ...(m[2] ? { version: Number(m[2]) } : {}) };
}

function slug(prompt: string): string {
  return (
    prompt
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-|-$/g, '')
      .slice(0, 40) || 'prompt'
  );
}

export function progressBar(done: number[], total: number, width = 30): string {
  const d = done.length ? done.reduce((a, b) => a + b, 0) / done.length : 0;
  const frac = total ? Math.min(1, d / total) : 0;
  return `[${'#'.repeat(Math.round(frac * width)).padEnd(width, '.')}] ${Math.round(d)}/${total} tokens × ${done.length} image${done.length === 1 ? '' : 's'}`;
}

type Values = OptionValues<typeof cli.options>;

/** The Generate request from the flags. Range checks are the server's (it names the field); the CLI only
 *  parses. */
function generateRequest(prompt: string, values: Values) {
  return {
    prompt,
    numImages: read.int('n', values.n) ?? 4,
    seed: values.seed === undefined ? undefined : BigInt(values.seed),
    temperature: read.num('temperature', values.temperature),
    topK: read.int('top-k', values['top-k']),
    topP: read.num('top-p', values['top-p']),
    guidanceScale: read.num('guidance-scale', values['guidance-scale']),
    candidates: read.int('candidates', values.candidates),
    model: parseModelRef(values.model),
  };
}

/** $DALLE_HOME/outputs/<time>-<prompt slug>. */
function defaultOutDir(prompt: string): string {
  const home = resolve(process.env.DALLE_HOME || './.dalle');
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  return join(home, 'outputs', `${stamp}-${slug(prompt)}`);
}

export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommand(argv, cli);
  if (positionals.length !== 1)
    throw read.error(`give exactly one prompt (quote it), got ${positionals.length}`);
  const prompt = positionals[0]!;
  if (values.seed !== undefined && !/^\d+$/.test(values.seed))
    throw read.error(`--seed must be a non-negative integer, got '${values.seed}'`);
  const timeout = read.num('timeout', values.timeout, (t) => t > 0, 'a number of seconds > 0');
  const request = generateRequest(prompt, values);
  const server = values.server ?? process.env.DALLE_SAMPLER_ADDRESS ?? '127.0.0.1:50051';
  const outDir = resolve(values.out ?? defaultOutDir(prompt));

  const { initTelemetry, shutdownTelemetry } = await import('../../telemetry/index.ts');
  initTelemetry({ serviceName: 'dalle-cli' }); // the Generate client span, exported when OTEL_* says so
  const { createSamplerClient, generate } = await import('../sampler/client.ts');
  const client = createSamplerClient(server);
  const tty = process.stderr.isTTY && !values.json;
  let cancel: (() => void) | undefined;
  const onSigint = () => cancel?.();
  process.once('SIGINT', onSigint);
  try {
    const result = await generate(client, request, {
      deadline: timeout === undefined ? undefined : Date.now() + timeout * 1000,
      keepProgress: false,
      onCall: (call) => (cancel = () => call.cancel()),
      onProgress: (p) => {
        if (!tty) return;
        const q = p.queuePosition > 0 ? ` (queued, ${p.queuePosition} ahead)` : '';
        process.stderr.write(`\r${progressBar(p.tokensDone, p.tokensTotal)}${q}\x1b[K`);
      },
      onImage: (img) => {
        if (tty) process.stderr.write(`\rimage ${img.index} (seed ${img.seed}) done\x1b[K`);
      },
    });
    if (tty) process.stderr.write('\r\x1b[K');
    const { files, gridPath } = await writeImages(outDir, result.images);
    const model = result.done.model;
    const timings = result.done.timings;
    if (values.json)
      console.log(JSON.stringify({ prompt, server, model, images: files, grid: gridPath, timings }));
    else printFiles(files, gridPath, outDir, model, timings);
    return 0;
  } catch (e) {
    if (tty) process.stderr.write('\r\x1b[K');
    return exitForGrpcError(e, server);
  } finally {
    process.off('SIGINT', onSigint);
    client.close();
    await shutdownTelemetry();
  }
}

type GenerateResult = Awaited<ReturnType<(typeof import('../sampler/client.ts'))['generate']>>;
type WrittenImage = Awaited<ReturnType<typeof writeImages>>['files'][number];

/** Each image as image-<index>-seed<seed>.png, and grid.png of them all, in index order. */
async function writeImages(outDir: string, images: GenerateResult['images']) {
  const { gridPng } = await import('../sampler/png.ts');
  mkdirSync(outDir, { recursive: true });
  const sorted = [...images].sort((a, b) => a.index - b.index);
  const files = sorted.map((img) => {
    const path = join(outDir, `image-${img.index}-seed${img.seed}.png`);
    writeFileSync(path, img.png);
    return {
      index: img.index,
      seed: Number(img.seed),
      path,
      width: img.width,
      height: img.height,
      score: img.score,
      rerankScore: img.rerankScore,
      candidate: img.candidate,
      tokens: img.tokens,
    };
  });
  const gridPath = join(outDir, 'grid.png');
  writeFileSync(gridPath, await gridPng(sorted.map((i) => i.png)));
  return { files, gridPath };
}

function printFiles(
  files: WrittenImage[],
  gridPath: string,
  outDir: string,
  model: GenerateResult['done']['model'],
  t: GenerateResult['done']['timings'],
): void {
  console.log(
    `${files.length} image(s) from ${model?.name} v${model?.version} in ${((t?.totalMs ?? 0) / 1000).toFixed(2)} s → ${outDir}`,
  );
  for (const f of files) {
    const rerank =
      f.rerankScore === undefined ? '' : `  reranker ${f.rerankScore.toFixed(3)} (candidate ${f.candidate})`;
    console.log(`  ${f.path}  seed ${f.seed}  score ${f.score.toFixed(3)}${rerank}`);
  }
  console.log(`  ${gridPath}`);
}

/** A gRPC status as one line on stderr and an exit code (2 for a bad request); anything else is rethrown. */
function exitForGrpcError(e: unknown, server: string): number {
  const err = e as ServiceError;
  if (typeof err.code !== 'number') throw e;
  const hint =
    err.code === status.UNAVAILABLE && /No connection|ECONNREFUSED|connect/i.test(err.details ?? '')
      ? ` (is \`dalle sampler\` running at ${server}? a sampler with TLS needs DALLE_SAMPLER_TLS_CA or DALLE_SAMPLER_TLS=1)`
      : '';
  console.error(`dalle generate: ${status[err.code]}: ${err.details}${hint}`);
  return err.code === status.INVALID_ARGUMENT ? 2 : 1;
}
