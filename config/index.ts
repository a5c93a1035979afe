// One public surface for configuration: resolve a preset name, a file, or an object into a validated RunSpec.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { presets } from './presets.ts';
import { crossFieldIssues, PresetName, RunSpec } from './spec.ts';

export * from './spec.ts';
export { specHash } from './spec-hash.ts';
export { presets } from './presets.ts';
export { parseSets } from './overrides.ts';

/** A config that failed validation; `issues` lists every offending path and why. */
export class ConfigError extends Error {
  override name = 'ConfigError';
  readonly fatal = true;
  constructor(
    readonly source: string,
    readonly issues: { path: string; message: string }[],
  ) {
    super(
      `invalid config ${source}:\n${issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n')}`,
    );
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Deep merge of overrides onto base. A dataset of a different kind replaces the preset's wholesale. */
function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    const kindChanged = isPlainObject(b) && isPlainObject(v) && 'kind' in v && v.kind !== b.kind;
    out[k] = isPlainObject(b) && isPlainObject(v) && !kindChanged ? merge(b, v) : v;
  }
  return out;
}

function issuesOf(err: z.ZodError): { path: string; message: string }[] {
  return err.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
}

/** Resolve an override object (must name `preset`) into a validated RunSpec, or throw ConfigError naming every bad field. */
export function resolveSpec(input: unknown, source = '(object)'): RunSpec {
  if (!isPlainObject(input)) throw new ConfigError(source, [{ path: '', message: 'must be an object' }]);
  const preset = PresetName.safeParse(input.preset ?? 'tiny');
  if (!preset.success)
    throw new ConfigError(source, [{ path: 'preset', message: preset.error.issues[0]!.message }]);
  const merged = merge(presets[preset.data], input);
  const parsed = RunSpec.safeParse(merged);
  if (!parsed.success) {
    // Field errors stop zod before cross-field rules run; report both at once.
    const issues = issuesOf(parsed.error);
    for (const i of crossFieldIssues(merged)) {
      const path = i.path.join('.');
      if (!issues.some((x) => x.path === path)) issues.push({ path, message: i.message });
    }
    throw new ConfigError(source, issues);
  }
  return parsed.data;
}

/** Load `<preset>` or a JSON/YAML file path into a validated RunSpec. */
export function loadSpec(ref: string): RunSpec {
  if (PresetName.safeParse(ref).success) return resolveSpec({ preset: ref }, `preset ${ref}`);
  let text: string;
  try {
    text = readFileSync(ref, 'utf8');
  } catch (e) {
    throw new ConfigError(ref, [{ path: '', message: `cannot read file: ${(e as Error).message}` }]);
  }
  let data: unknown;
  try {
    data = ref.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ConfigError(ref, [
      { path: '', message: `not valid ${ref.endsWith('.json') ? 'JSON' : 'YAML'}: ${(e as Error).message}` },
    ]);
  }
  return resolveSpec(data, ref);
}

/** JSON Schema of the config file (overrides on top of a preset, so model fields are optional there). */
export function configJsonSchema(): unknown {
  return z.toJSONSchema(RunSpec, { io: 'input', unrepresentable: 'any' });
}
