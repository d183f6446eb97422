import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.ts';
import { ArchiveProgress, clearStaging, completeRenames, rangeStart, removeFinals, type PendingPair } from '../../src/runtime/archive/archive-progress.ts';
import { rawFilePath } from '../../src/runtime/archive/layout.ts';
import { startRedisServer, type ServerHandle } from '../../src/runtime/local-servers.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';

const exists = (p: string): Promise<boolean> => stat(p).then(() => true, () => false);

/** The archiver's fenced progress step (against a real redis-server) and its file recovery (temp dirs). */
describe('archive progress: fenced commit and recovery', () => {
  let dir: string;
  let server: ServerHandle;
  let redis: Redis;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-archive-progress-'));
    server = await startRedisServer({ dir: path.join(dir, 'redis') });
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('commits only under the current epoch, moves forward only, and counts rows and files', async () => {
    const keys = new RedisKeys('tp1');
    const p = new ArchiveProgress(redis, keys, 'a-s3');
    const e1 = await p.acquire();
    await p.commit(e1, { seq: 10, pending: [['/t/a', '/f/a']], rows: 100, files: 1 });
    expect(await p.read()).toEqual({ seq: 10, pending: [['/t/a', '/f/a']], clicks: 100, files: 1 });
    // Same key tag as the unit's epoch: one slot.
    expect(keys.archive('a-s3')).toBe('tp1:{a-s3}:archive');
    await expect(p.commit(e1, { seq: 10, pending: [], rows: 0, files: 0 })).rejects.toThrow(/SEQ_REGRESSION/);
    const e2 = await p.acquire();
    await expect(p.commit(e1, { seq: 20, pending: [], rows: 5, files: 1 })).rejects.toMatchObject({ code: ErrorCode.Fenced });
    await p.commit(e2, { seq: 20, pending: [], rows: 5, files: 1 });
    // A rewind (a missing file's range archived again) may go back, still fenced.
    await p.commit(e2, { seq: 4, pending: [], rows: 0, files: 0, rewind: true });
    expect(await p.read()).toMatchObject({ seq: 4, pending: [], clicks: 105, files: 2 });
    await expect(p.commit(e1, { seq: 1, pending: [], rows: 0, files: 0, rewind: true })).rejects.toMatchObject({ code: ErrorCode.Fenced });
  });

  it('recovery: staged files of the last commit are renamed, finals already there are left, lost ones are reported', async () => {
    const root = path.join(dir, 'rec');
    const staging = path.join(root, '_staging', 'a-s1');
    await mkdir(staging, { recursive: true });
    const h = Date.UTC(2026, 0, 2, 5);
    const finals = [rawFilePath(root, 's1', h, 11, 20), rawFilePath(root, 's1', h + 3600_000, 11, 20), rawFilePath(root, 's1', h + 7200_000, 11, 20)];
    const pairs: PendingPair[] = finals.map((f, i) => [path.join(staging, `f${i}.tmp-3`), f]);
    // Pair 0 staged (crash before its rename), pair 1 already renamed, pair 2 lost.
    await writeFile(pairs[0]![0], 'a');
    await mkdir(path.dirname(finals[1]!), { recursive: true });
    await writeFile(finals[1]!, 'b');
    await writeFile(path.join(staging, 'other.tmp-2'), 'x');
    const missing = await completeRenames(pairs);
    expect(missing).toEqual([pairs[2]]);
    expect(await exists(finals[0]!)).toBe(true);
    expect(await exists(pairs[0]![0])).toBe(false);
    expect(rangeStart(pairs)).toBe(11);
    await removeFinals(pairs);
    expect(await Promise.all(finals.map(exists))).toEqual([false, false, false]);
    expect(await clearStaging(staging)).toBe(1);
    expect(await readdir(staging)).toEqual([]);
    expect(await clearStaging(path.join(root, 'nope'))).toBe(0);
  });
});
