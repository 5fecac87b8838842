import { defineConfig } from 'vitest/config';
import { INTEROP_JOBS } from './test/helpers/jobs';

// The Python interop tests (test/python/*.py-test.ts), the last part of `npm test` and all of
// `npm run test:peft`; see there.
export default defineConfig({
  test: {
    include: ['test/python/**/*.py-test.ts'],
    environment: 'node',
    pool: 'forks',
    maxWorkers: 1,
    maxConcurrency: INTEROP_JOBS, // cases of one file at once where it says describe.concurrent
    testTimeout: 300_000,
    hookTimeout: 120_000,
    globalSetup: ['test/setup/global.ts'],
    env: { TABTUNE_KERNELS: 'baseline' }, // untuned kernels (see vitest.config.ts)
    reporters: ['default'],
  },
});
