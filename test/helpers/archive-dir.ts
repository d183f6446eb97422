/**
 * The raw archive folder of test processes (ADAGG_ARCHIVE_DIR): the one test/global-setup.ts made
 * for this run and removes at its end. Children that inherit process.env (adagg start, adagg
 * node, npm start) archive there too; startStack gives each stack its own folder instead.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

function runFolder(): string {
  const set = process.env.ADAGG_ARCHIVE_DIR;
  if (set) return set;
  // Outside `vitest run` (a script importing the helpers): a folder of our own, removed at exit.
  const dir = mkdtempSync(path.join(os.tmpdir(), 'adagg-test-archive-'));
  process.env.ADAGG_ARCHIVE_DIR = dir;
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export const TEST_ARCHIVE_DIR = runFolder();
