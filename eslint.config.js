// Lint: type-aware rules everywhere, and a hard fence around workflows/ so workflow code stays
// deterministic (Temporal replays it): no Node built-ins, no tfjs, no nats, no grpc there.
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
              message: 'workflows/ may only `import type` from other folders.',
            },
          ],
        },
      ],
    },
  },
);
