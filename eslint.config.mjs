import nx from '@nx/eslint-plugin';
import prettier from 'eslint-config-prettier';

const nestPrismaQueue = ['@nestjs/*', '@prisma/*', 'bullmq', 'ioredis', 'pg'];

export default [
  ...nx.configs['flat/base'],
  ...nx.configs['flat/typescript'],
  ...nx.configs['flat/javascript'],
  {
    ignores: [
      '**/node_modules',
      '**/dist',
      '**/.next',
      '**/.nx',
      '**/coverage',
      '**/tmp',
      '**/generated/**',
      'apps/portal/next-env.d.ts',
    ],
  },
  {
    files: ['**/*.ts', '**/*.tsx', '**/*.js', '**/*.jsx', '**/*.mjs', '**/*.mts'],
    rules: {
      '@nx/enforce-module-boundaries': [
        'error',
        {
          enforceBuildableLibDependency: true,
          allow: [],
          banTransitiveDependencies: false,
          depConstraints: [
            // Scope: which part of the product may use which code.
            { sourceTag: 'scope:shared', onlyDependOnLibsWithTags: ['scope:shared'] },
            { sourceTag: 'scope:gateway', onlyDependOnLibsWithTags: ['scope:gateway', 'scope:shared'] },
            {
              sourceTag: 'scope:control-plane',
              // consumer:control-plane: an audit lib the control plane's audit API reuses (libs/audit/core).
              onlyDependOnLibsWithTags: ['scope:control-plane', 'scope:shared', 'consumer:control-plane'],
            },
            { sourceTag: 'scope:audit', onlyDependOnLibsWithTags: ['scope:audit', 'scope:shared'] },
            { sourceTag: 'scope:portal', onlyDependOnLibsWithTags: ['scope:portal', 'scope:shared'] },
            { sourceTag: 'scope:dev', onlyDependOnLibsWithTags: ['scope:dev', 'scope:shared'] },
            // Type: layering inside a scope.
            { sourceTag: 'type:app', onlyDependOnLibsWithTags: ['type:feature', 'type:data', 'type:domain', 'type:contracts', 'type:util', 'type:runtime', 'type:ui', 'type:testing'] },
            { sourceTag: 'type:feature', onlyDependOnLibsWithTags: ['type:feature', 'type:data', 'type:domain', 'type:contracts', 'type:util', 'type:runtime', 'type:ui', 'type:testing'] },
            { sourceTag: 'type:runtime', onlyDependOnLibsWithTags: ['type:contracts', 'type:util', 'type:data', 'type:testing'] },
            { sourceTag: 'type:data', onlyDependOnLibsWithTags: ['type:data', 'type:contracts', 'type:util', 'type:testing'] },
            { sourceTag: 'type:ui', onlyDependOnLibsWithTags: ['type:ui', 'type:contracts', 'type:util'] },
            { sourceTag: 'type:testing', onlyDependOnLibsWithTags: ['type:data', 'type:contracts', 'type:util', 'type:testing'] },
            {
              sourceTag: 'type:domain',
              onlyDependOnLibsWithTags: ['type:domain', 'type:contracts', 'type:util'],
              bannedExternalImports: nestPrismaQueue,
            },
            {
              sourceTag: 'type:contracts',
              onlyDependOnLibsWithTags: ['type:contracts', 'type:util'],
              bannedExternalImports: nestPrismaQueue,
            },
            {
              sourceTag: 'type:util',
              onlyDependOnLibsWithTags: ['type:util'],
              bannedExternalImports: ['@nestjs/*', '@prisma/*', 'bullmq', 'ioredis', 'next', 'react'],
            },
            // Runtime: the gateway hot path stays free of frameworks.
            {
              sourceTag: 'hotpath',
              bannedExternalImports: ['@nestjs/*', '@prisma/*', 'class-validator', 'class-transformer', 'rxjs'],
            },
            { sourceTag: 'runtime:browser', bannedExternalImports: ['@nestjs/*', '@prisma/*', 'bullmq', 'ioredis', 'pg'] },
          ],
        },
      ],
    },
  },
  {
    files: ['**/*.ts', '**/*.tsx'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'off',
      'no-console': 'off',
    },
  },
  {
    // Build tool configuration is not project source: it may load repo tooling by path.
    files: ['**/webpack.config.js', '**/*.config.{js,cjs,mjs,ts,mts}'],
    rules: { '@nx/enforce-module-boundaries': 'off' },
  },
  prettier,
];
