import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 180_000,
    hookTimeout: 180_000,
    // Interop and crash tests start real processes; two cores, so keep parallelism modest.
    pool: 'forks',
    maxWorkers: 2,
  },
});
