#!/usr/bin/env node
// The `dalle` command: the compiled CLI in dist/ (`npm run build`; `npm start` and `npm test` build first),
// with stack traces mapped back to the TypeScript sources. Development runs the sources through tsx instead
// (`npm run dev -- <command>`).
import { existsSync, readdirSync, statSync } from 'node:fs';

const main = new URL('../dist/services/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  console.error('dalle: the compiled CLI (dist/) is missing: run `npm run build` in the package folder');
  process.exit(1);
}
warnIfStale();
process.setSourceMapsEnabled(true);
await import(main.href);

// In a source checkout, a TypeScript file edited after the last build would silently not run: say so. The
// walk stats a few hundred files (milliseconds); an installed package ships no tsconfig.build.json and skips it.
function warnIfStale() {
  const root = new URL('../', import.meta.url);
  const info = new URL('dist/.tsbuildinfo', root);
  if (!existsSync(new URL('tsconfig.build.json', root)) || !existsSync(info)) return;
  const built = statSync(info).mtimeMs;
  const skip = new Set(['node_modules', 'dist', 'test', 'web', 'anchor']);
  const newer = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (e.isDirectory()) {
        if (!skip.has(e.name) && !e.name.startsWith('.') && newer(new URL(`${e.name}/`, dir))) return true;
      } else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts')) {
        if (statSync(new URL(e.name, dir)).mtimeMs > built) return true;
      }
    }
    return false;
  };
  const folders = readdirSync(root, { withFileTypes: true }).filter(
    (e) => e.isDirectory() && !skip.has(e.name) && !e.name.startsWith('.'),
  );
  if (folders.some((e) => newer(new URL(`${e.name}/`, root))))
    console.error('dalle: warning: sources changed since the last build (dist/): run `npm run build`');
}
