import { defineConfig } from 'vitest/config';

// GPU tests share one software Vulkan device per worker; two forks keep both cores busy without
// oversubscribing lavapipe's own threads.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'test/**/*.test.tsx'],
    environment: 'node',
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 120_000,
    hookTimeout: 120_000,
    globalSetup: ['test/setup/global.ts'],
    // The baseline matmul kernels, untuned, unless a test asks otherwise: tuning times kernels, and
    // results must not depend on the machine's load (test/kernels/matmul-tune.test.ts tests it).
    env: { TABTUNE_KERNELS: 'baseline' },
    reporters: ['default'],
  },
});
