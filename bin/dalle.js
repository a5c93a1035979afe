#!/usr/bin/env node
// The `dalle` command: the compiled CLI in dist/ (`npm run build`; `npm start` and `npm test` build first),
// with stack traces mapped back to the TypeScript sources. Development runs the sources through tsx instead
// (`npm run dev -- <command>`).
import { existsSync } from 'node:fs';

const main = new URL('../dist/services/cli/main.js', import.meta.url);
if (!existsSync(main)) {
  console.error('dalle: the compiled CLI (dist/) is missing: run `npm run build` in the package folder');
  process.exit(1);
}
process.setSourceMapsEnabled(true);
await import(main.href);
