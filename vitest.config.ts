import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  // Examples import the package by name, as a user's project does (tsconfig.json maps the same names for tsc).
  resolve: {
    alias: [
      { find: /^skein$/, replacement: fileURLToPath(new URL('./src/index.ts', import.meta.url)) },
      { find: /^skein\/testing$/, replacement: fileURLToPath(new URL('./src/testing/index.ts', import.meta.url)) },
    ],
  },
  test: {
    include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
    // Load-sensitive soaks (no lease lost over a large fan-out with a 2 s lease) run alone: `npm run test:soak`.
    exclude: ['test/soak/**', '**/node_modules/**'],
    // Once per run, before any file: builds dist/ when the sources are newer, for the tests that run the built CLI.
    globalSetup: ['test/support/build.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests start real processes and servers; keep files from fighting over 2 cores.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
