import { defineConfig } from 'vitest/config';
import { INTEROP_JOBS } from './test/helpers/jobs';

// `npm run test:peft`: the Python PEFT interop check only (test/python/*.py-test.ts); see there.
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
