// Lint: type-aware rules everywhere, and fences around the Temporal boundary: workflows/ stays
// deterministic (Temporal replays it: no Node built-ins, no tfjs, no nats, no grpc there) and imports other
// folders as types only, except contract/; contract/ holds only definitions and types; activities/ never
// loads workflow code.
import tseslint from 'typescript-eslint';

const nodeBuiltins = [
  'fs',
  'path',
  'os',
  'crypto',
  'child_process',
  'net',
  'http',
  'https',
  'stream',
  'worker_threads',
  'timers',
  'events',
  'url',
  'util',
  'zlib',
  'dns',
  'tls',
  'process',
  'readline',
  'cluster',
  'v8',
  'vm',
];

/** Outside model/, the model is imported through its public surface only. */
const modelSurface = {
  regex: '(^|/)model/(?!index\\.ts$).+',
  message: 'import the model through model/index.ts, its public surface.',
};

/** Relative imports of top-level folders other than `allowed` (a file's own folder is reached with ./). */
function lowerOnly(allowed, message) {
  return { regex: `^(\\.\\./)+(?!(${allowed.join('|')})/)[a-z-]+/`, message };
}

/** One no-restricted-imports block: the model-surface rule plus a folder's own patterns. */
function fence(files, ignores, patterns = [], paths = []) {
  return {
    files,
    ignores,
    rules: { 'no-restricted-imports': ['error', { paths, patterns: [modelSurface, ...patterns] }] },
  };
}

export default tseslint.config(
  {
    ignores: [
      'node_modules/**',
      'proto/gen/**',
      '.dalle/**',
      '.dalle-test/**',
      'dist/**',
      'bin/**',
      'eslint.config.js',
    ],
  },
  ...tseslint.configs.recommended,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
  // Layers (docs/architecture.md): the model is used through model/index.ts only, and the lower folders
  // import only the folders below them. Each block lists the whole rule: a later block's options replace an
  // earlier one's for the files both match.
  fence(
    ['**/*.ts'],
    ['model/**', 'data/**', 'collective/**', 'workflows/**', 'contract/**', 'activities/**'],
  ),
  fence(
    ['model/**/*.ts', 'data/**/*.ts'],
    [],
    [lowerOnly(['config', 'random'], 'model/ and data/ may import only config/ and random/.')],
  ),
  fence(
    ['collective/**/*.ts'],
    [],
    [
      lowerOnly(
        ['config', 'telemetry', 'random', 'model'],
        'collective/ may import only config/, telemetry/ and random/.',
      ),
      {
        group: ['../model/*'],
        allowTypeImports: true,
        message: 'collective/ may only `import type` from model/ (its ParamSpec).',
      },
    ],
  ),
  fence(
    ['workflows/**/*.ts'],
    [],
    [
      { group: ['node:*'], message: 'workflows/ must be deterministic: no Node built-ins.' },
      {
        group: ['@tensorflow/*', 'nats', 'nats/*', '@grpc/*', 'sharp', 'tokenizers'],
        message: 'workflows/ may not use tfjs, nats, grpc or native modules: do it in an activity.',
      },
      {
        group: [
          '../activities/*',
          '../model/*',
          '../collective/*',
          '../store/*',
          '../data/*',
          '../services/*',
          '../telemetry/*',
        ],
        allowTypeImports: true,
        message: 'workflows/ may only `import type` from other folders (values: contract/ only).',
      },
    ],
    nodeBuiltins
      .flatMap((m) => [m, `node:${m}`])
      .map((name) => ({
        name,
        message: 'workflows/ must be deterministic: no Node built-ins (use activities).',
      })),
  ),
  fence(
    ['contract/**/*.ts'],
    [],
    [
      {
        regex: '^(?!@temporalio/(workflow|common)$|\\./|\\.\\./config/)',
        message: 'contract/ may import only @temporalio/workflow, @temporalio/common and config/ types.',
      },
      {
        group: ['../config/*'],
        allowTypeImports: true,
        message: 'contract/ may only `import type` from config/.',
      },
    ],
  ),
  fence(
    ['activities/**/*.ts'],
    [],
    [
      {
        group: ['../workflows/*'],
        allowTypeImports: true,
        message: 'activities/ may not load workflow code: shared definitions live in contract/.',
      },
    ],
  ),
  // Function length: at most 80 lines (blank lines and comments not counted) outside tests, so that a long
  // procedure reads as a list of named steps.
  {
    files: ['**/*.ts'],
    ignores: ['**/*.test.ts', 'test/**'],
    rules: {
      'max-lines-per-function': ['error', { max: 80, skipBlankLines: true, skipComments: true, IIFEs: true }],
    },
  },
);
