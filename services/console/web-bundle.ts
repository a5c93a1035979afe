// The page's script and styles, bundled from services/console/web/ (Preact components in TSX, uPlot and its
// stylesheet from node_modules) by esbuild when the console starts: nothing is fetched from the internet,
// nothing generated is committed, and the page loads one HTML, one script and one stylesheet.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { build } from 'esbuild';
import { packageFile } from '../../config/package-root.ts';

export interface Asset {
  body: Uint8Array;
  gzip: Uint8Array;
  type: string;
  etag: string;
}

export type Assets = Record<'/' | '/app.js' | '/app.css', Asset>;

const WEB = packageFile('services/console/web/');

function asset(body: Uint8Array, type: string): Asset {
  return {
    body,
    gzip: gzipSync(body, { level: 9 }),
    type,
    etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`,
  };
}

/** Bundles the page once (about a second on a busy 2-core machine); the console serves the result from memory. */
export async function buildAssets(): Promise<Assets> {
  const r = await build({
    entryPoints: { app: `${WEB}main.tsx` },
    bundle: true,
    minify: true,
    write: false,
    format: 'esm',
    target: 'es2022',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: '/',
    logLevel: 'silent',
    legalComments: 'none',
  });
  const out = (ext: string) => {
    const f = r.outputFiles.find((o) => o.path.endsWith(ext));
    if (!f) throw new Error(`esbuild produced no ${ext}`);
    return f.contents;
  };
  return {
    '/': asset(readFileSync(`${WEB}index.html`), 'text/html; charset=utf-8'),
    '/app.js': asset(out('.js'), 'text/javascript; charset=utf-8'),
    '/app.css': asset(out('.css'), 'text/css; charset=utf-8'),
  };
}
