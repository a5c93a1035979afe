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
  {
    files: ['workflows/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: nodeBuiltins
            .flatMap((m) => [m, `node:${m}`])
            .map((name) => ({
              name,
              message: 'workflows/ must be deterministic: no Node built-ins (use activities).',
            })),
          patterns: [
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
        },
      ],
    },
  },
  {
    files: ['contract/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!@temporalio/(workflow|common)$|\\./|\\.\\./config/)',
              message:
                'contract/ may import only @temporalio/workflow, @temporalio/common and config/ types.',
            },
            {
              group: ['../config/*'],
              allowTypeImports: true,
              message: 'contract/ may only `import type` from config/.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['activities/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              group: ['../workflows/*'],
              allowTypeImports: true,
              message: 'activities/ may not load workflow code: shared definitions live in contract/.',
            },
          ],
        },
      ],
    },
  },
);
