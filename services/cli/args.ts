// The one argument layer of every `dalle` command and benchmark: node's built-in `util.parseArgs` (strict:
// an unknown option is an error, never ignored) behind a command description that also renders `--help`.
// Every command answers `--help` / `-h` with its usage (exit 0); a bad argument is a UsageError, which the
// dispatcher prints as `dalle <command>: <what is wrong>` followed by the usage line, and exits 2.
import { parseArgs } from 'node:util';

/** A bad command line: names the command and what is wrong with it. */
export class UsageError extends Error {
  override name = 'UsageError';
  /** The command's synopsis, printed after the message (set by `parseCommand`). */
  usage?: string;
  constructor(
    message: string,
    /** `train`, `bench dvae`, …: what the dispatcher prints after `dalle `. */
    public command?: string,
  ) {
    super(message);
  }
}

/** `--help` / `-h` was given: `text` is the command's help, printed to stdout with exit 0. */
export class HelpRequested extends Error {
  override name = 'HelpRequested';
  constructor(readonly text: string) {
    super(text);
  }
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** The value's placeholder in help (`N`, `host:port`); string options only. */
  value?: string;
  /** One line: what the option does (and its default). */
  help: string;
  /** The command cannot run without it (string options only). */
  required?: boolean;
  /** May be given several times (string options only): the values come as a list, in order. */
  multiple?: boolean;
}

export interface CommandSpec<O extends Record<string, OptionSpec>> {
  /** The command as typed after `dalle`: `train`, `bench dvae`. */
  name: string;
  /** One line: what the command does. */
  summary: string;
  /** Positional arguments in the synopsis (`<run-id>`, `"<prompt>"`); without it, a positional argument is
   *  an error. */
  positionals?: string;
  options: O;
  /** Lines after the options (subcommands, examples). */
  notes?: string[];
}

export type OptionValues<O extends Record<string, OptionSpec>> = {
  [K in keyof O]?: O[K]['type'] extends 'boolean'
    ? boolean
    : O[K]['multiple'] extends true
      ? string[]
      : string;
};

/** Declares a command (identity: it keeps the options' literal types for `parseCommand`'s result). */
export function command<O extends Record<string, OptionSpec>>(spec: CommandSpec<O>): CommandSpec<O> {
  return spec;
}

const placeholder = (o: OptionSpec) => (o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : '');

/** `-n, --n N` (help) */
const flag = (name: string, o: OptionSpec) => `${o.short ? `-${o.short}, ` : ''}--${name}${placeholder(o)}`;

/** `dalle <name> <positionals> [options]`. */
export function synopsis(spec: CommandSpec<Record<string, OptionSpec>>): string {
  const opts = Object.entries(spec.options).map(([k, o]) => {
    const f = `${o.short === k ? '-' : '--'}${k}${placeholder(o)}`;
    return o.required ? f : `[${f}]`;
  });
  return ['dalle', spec.name, spec.positionals, ...opts].filter(Boolean).join(' ');
}

/** The text `--help` prints. */
export function helpText(spec: CommandSpec<Record<string, OptionSpec>>): string {
  const rows = [
    ...Object.entries(spec.options).map(([k, o]) => [flag(k, o), o.help] as const),
    ['-h, --help', 'show this help'] as const,
  ];
  const w = Math.max(...rows.map(([f]) => f.length));
  return [
    `usage: ${synopsis(spec)}`,
    '',
    spec.summary,
    '',
    'options:',
    ...rows.map(([f, h]) => `  ${f.padEnd(w)}  ${h}`),
    ...(spec.notes?.length ? ['', ...spec.notes] : []),
  ].join('\n');
}

/** node's parseArgs messages, in our words (the option named, without its advice about `--`). */
function reword(e: Error): string {
  const option = /(--?[\w-]+)(?: <value>)?'/.exec(e.message)?.[1] ?? '';
  if (e.message.startsWith('Unknown option')) return `unknown option '${option}'`;
  if (e.message.includes('argument missing')) return `option '${option}' needs a value`;
  if (e.message.includes('argument is ambiguous'))
    return `option '${option}' needs a value (one that starts with '-' is written ${option}=-…)`;
  if (e.message.includes('does not take an argument')) return `option '${option}' takes no value`;
  return e.message.split('\n')[0]!;
}

/** Parses `argv` against `spec`; throws HelpRequested for `--help` / `-h` and UsageError for anything
 *  parseArgs refuses (and for positionals a command takes none of). Values stay strings: the typed
 *  readers below check and convert them. */
export function parseCommand<O extends Record<string, OptionSpec>>(
  argv: string[],
  spec: CommandSpec<O>,
): { values: OptionValues<O>; positionals: string[] } {
  const options = Object.fromEntries(
    Object.entries(spec.options).map(([k, o]) => [
      k,
      { type: o.type, ...(o.short ? { short: o.short } : {}), ...(o.multiple ? { multiple: true } : {}) },
    ]),
  );
  const end = argv.indexOf('--'); // what follows `--` is positional, even `--help`
  const flags = end === -1 ? argv : argv.slice(0, end);
  if (flags.includes('--help') || flags.includes('-h')) throw new HelpRequested(helpText(spec));
  try {
    const { values, positionals } = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    if (!spec.positionals && positionals.length)
      throw new UsageError(`unexpected argument '${positionals[0]}'`);
    const missing = Object.keys(spec.options).find(
      (k) => spec.options[k]!.required && values[k] === undefined,
    );
    if (missing) throw new UsageError(`--${missing} is required`);
    return { values: values as OptionValues<O>, positionals };
  } catch (e) {
    throw usageError(spec, e instanceof UsageError ? e.message : reword(e as Error));
  }
}

/** A UsageError of `spec` (its command name and synopsis attached). */
export function usageError(spec: CommandSpec<Record<string, OptionSpec>>, message: string): UsageError {
  const err = new UsageError(message, spec.name);
  err.usage = synopsis(spec);
  return err;
}

/** Readers of option values: each names the option and the rule when the value breaks it. */
export function readers(spec: CommandSpec<Record<string, OptionSpec>>) {
  const fail = (name: string, rule: string, raw: string) =>
    usageError(spec, `--${name} must be ${rule}, got '${raw}'`);
  const number = (name: string, raw: string | undefined, rule: (n: number) => boolean, ruleText: string) => {
    if (raw === undefined) return undefined;
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n) || !rule(n)) throw fail(name, ruleText, raw);
    return n;
  };
  return {
    /** An integer, ≥ min and ≤ max when given (the server checks the ranges of what it is sent). */
    int(name: string, raw: string | undefined, min = -Infinity, max = Infinity) {
      const range = max !== Infinity ? ` in [${min}, ${max}]` : min !== -Infinity ? ` ≥ ${min}` : '';
      return number(name, raw, (n) => Number.isInteger(n) && n >= min && n <= max, `an integer${range}`);
    },
    /** A finite number; `rule` narrows it (e.g. `> 0`). */
    num(
      name: string,
      raw: string | undefined,
      rule: (n: number) => boolean = () => true,
      ruleText = 'a number',
    ) {
      return number(name, raw, rule, ruleText);
    },
    /** One of `choices`. */
    choice<T extends string>(name: string, raw: string | undefined, choices: readonly T[]): T | undefined {
      if (raw === undefined) return undefined;
      if (!(choices as readonly string[]).includes(raw))
        throw fail(name, `one of ${choices.join(', ')}`, raw);
      return raw as T;
    },
    /** A comma list, each item one of `choices` (at least one). */
    choices<T extends string>(name: string, raw: string | undefined, choices: readonly T[]): T[] | undefined {
      if (raw === undefined) return undefined;
      const list = raw.split(',').map((s) => s.trim());
      if (!list.length || list.some((x) => !(choices as readonly string[]).includes(x)))
        throw fail(name, `a comma list of ${choices.join(', ')}`, raw);
      return list as T[];
    },
    /** A comma list of integers ≥ min. */
    ints(name: string, raw: string | undefined, min: number): number[] | undefined {
      if (raw === undefined) return undefined;
      const list = raw.split(',').map(Number);
      if (!list.length || list.some((n) => !Number.isInteger(n) || n < min))
        throw fail(name, `a comma list of integers ≥ ${min}`, raw);
      return list;
    },
    /** A UsageError of this command. */
    error: (message: string) => usageError(spec, message),
  };
}
