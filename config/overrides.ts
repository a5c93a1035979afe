// `--set path=value` (the recipe benchmarks, `dalle demo`): one config field per flag, the value parsed as JSON
// when it is JSON (a plain string otherwise), so an experiment is a command line.

/** The overrides object of `--set` flags (fed to resolveSpec with the preset). `fail` names a bad flag. */
export function parseSets(
  sets: readonly string[],
  fail: (message: string) => Error,
): Record<string, unknown> {
  const overrides: Record<string, unknown> = {};
  for (const kv of sets) {
    const eq = kv.indexOf('=');
    if (eq < 1) throw fail(`--set expects path=value, got '${kv}'`);
    let value: unknown = kv.slice(eq + 1);
    try {
      value = JSON.parse(value as string);
    } catch {
      // a plain string
    }
    const keys = kv.slice(0, eq).split('.');
    let at = overrides;
    for (const k of keys.slice(0, -1)) {
      if (typeof at[k] !== 'object' || at[k] === null) at[k] = {};
      at = at[k] as Record<string, unknown>;
    }
    at[keys.at(-1)!] = value;
  }
  return overrides;
}
