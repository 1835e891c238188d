import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

// Three tiers (see docs/architecture.md#tests): unit specs with no I/O, integration specs against the
// real Postgres and Redis on this machine (fresh database per run), and cross-app e2e specs.
const shared = {
  resolve: { tsconfigPaths: true },
  plugins: [swc.vite({ module: { type: 'es6' } })],
};

export default defineConfig({
  ...shared,
  test: {
    env: { OTEL_SDK_DISABLED: 'true', NODE_ENV: 'test' },
    projects: [
      {
        ...shared,
        test: {
          name: 'unit',
          include: ['apps/**/*.spec.ts', 'libs/**/*.spec.ts', 'tools/**/*.spec.ts'],
          environment: 'node',
        },
      },
      {
        ...shared,
        test: {
          name: 'int',
          include: ['apps/**/*.int-spec.ts', 'libs/**/*.int-spec.ts', 'tools/**/*.int-spec.ts'],
          environment: 'node',
          globalSetup: ['./tools/testing/global-setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 60_000,
        },
      },
      {
        ...shared,
        test: {
          name: 'e2e',
          include: ['e2e/**/*.e2e-spec.ts'],
          environment: 'node',
          globalSetup: ['./tools/testing/global-setup.ts'],
          testTimeout: 60_000,
          hookTimeout: 120_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
