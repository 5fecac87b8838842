import { defineConfig } from 'vitest/config';

// `npm run test:peft`: the Python PEFT interop check only (test/python/*.py-test.ts); see there.
export default defineConfig({
  test: {
    include: ['test/python/**/*.py-test.ts'],
    environment: 'node',
    pool: 'forks',
    maxWorkers: 1,
    testTimeout: 300_000,
    hookTimeout: 120_000,
    globalSetup: ['test/setup/global.ts'],
    env: { TABTUNE_KERNELS: 'baseline' }, // untuned kernels (see vitest.config.ts)
    reporters: ['default'],
  },
});
