// Where the package's own files are, for code that runs compiled (dist/, what bin/dalle.js runs) and code
// that runs from the sources through tsx (tests, development) alike. The compiled tree mirrors the sources
// one folder down (config/package-root.ts → dist/config/package-root.js), so files that are not compiled
// (bin/, proto/*.proto, the console page, shell scripts, shipped configs) are found from the package root,
// and compiled siblings by the extension this module itself has.
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const compiled = import.meta.url.endsWith('.js');

/** The package's root folder (the one holding package.json), with a trailing separator. */
export const PACKAGE_ROOT = fileURLToPath(new URL(compiled ? '../../' : '../', import.meta.url));

/** The extension of this tree's modules: `.js` compiled, `.ts` from the sources. */
export const MODULE_EXT = compiled ? '.js' : '.ts';

/** A file shipped with the package, by its path from the package root (`proto/`, `bin/dalle.js`, …). */
export function packageFile(path: string): string {
  return join(PACKAGE_ROOT, path);
}

/** The node flags that run a module file: the sources need tsx's loader, compiled JavaScript none. */
export function loaderFlags(file: string): string[] {
  return file.endsWith('.ts') ? ['--import', 'tsx'] : [];
}
