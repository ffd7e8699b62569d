import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// The soaks of test/soak: real worker processes under sustained load, meaningful only on an otherwise quiet machine
// (a 2 s lease leaves little room for a starved event loop), so they are not part of `npm test`. Their workers are
// the built CLI, like every process test's: base.test's globalSetup (test/support/build.ts) builds dist/ when stale.
export default defineConfig({ ...base, test: { ...base.test, include: ['test/soak/**/*.test.ts'], exclude: ['**/node_modules/**'], fileParallelism: false } });
