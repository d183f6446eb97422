import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One temp ADAGG_ARCHIVE_DIR for the run (test/global-setup.ts).
    globalSetup: ['test/global-setup.ts'],
    // Integration tests start real servers and processes; run files one at a time on 2 cores.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
