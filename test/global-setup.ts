/**
 * Once per `vitest run`: one temp folder for the raw archive of every test process and the
 * services they spawn (ADAGG_ARCHIVE_DIR, inherited by the workers and their children), removed
 * at the end, so no test writes into the checkout's ./data/archive and none leaves folders behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export default function setup(): () => void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'adagg-test-archive-'));
  process.env.ADAGG_ARCHIVE_DIR = dir;
  // No archivers unless a test asks for them (ADAGG_ARCHIVE=on, or the option archive: 'on'):
  // the archive is tested on its own (test/integration/archive-exactness.test.ts, a child
  // process, and test/integration/archive-shutdown.test.ts); elsewhere archivers in the test
  // worker only cost time.
  process.env.ADAGG_ARCHIVE = 'off';
  return () => rmSync(dir, { recursive: true, force: true });
}
