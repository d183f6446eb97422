import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../../errors.ts';
import type { RedisKeys } from '../redis-keys.ts';
import { awaitReplicas } from '../redis-replicas.ts';
import { fsyncPath } from './archive-buffer.ts';
import { parseFileName } from './layout.ts';
import { FENCED_STEP_PRELUDE } from '../fenced-step-lua.ts';
import { takeEpoch } from '../fencing-epoch.ts';
import { fileExists } from './file-exists.ts';

/**
 * An archiver's progress, one fenced atomic step (the archive's analogue of a shard commit):
 * refuse unless the caller's epoch is the unit's current epoch, and (when advancing) unless the
 * new sequence is past the stored one; then record sequence, epoch, the staged → final file pairs
 * of this commit (`pending`, for recovery), the time and the counters.
 *
 * KEYS: epoch, progress hash.
 * ARGV: epoch, seq, pending JSON, nowMs, rows, files, mode (`advance` | `rewind`), commit token.
 *
 * The token makes a resent call (ioredis resends one in flight when its connection drops)
 * acknowledged instead of refused as a regression.
 */
const COMMIT_LUA = `${FENCED_STEP_PRELUDE}
local stored = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if ARGV[7] == 'advance' and tonumber(ARGV[2]) <= stored then
  return redis.error_reply('SEQ_REGRESSION ' .. ARGV[2] .. ' <= ' .. stored)
end
redis.call('HSET', KEYS[2], 'seq', ARGV[2], 'epoch', ARGV[1], 'pending', ARGV[3], 'updatedAt', ARGV[4], 'commit', ARGV[8])
redis.call('HINCRBY', KEYS[2], 'clicks', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'files', ARGV[6])
return 1
`;

/** A staged file and its final path, as recorded by a commit. */
export type PendingPair = [tmp: string, final: string];

export interface StoredProgress {
  seq: number;
  pending: PendingPair[];
  clicks: number;
  files: number;
}

const TOKEN_BASE = randomBytes(8).toString('hex');
let tokens = 0;

/** Progress of one archiver unit in Redis (`keys.archive(unitId)`, fenced by `keys.epoch(unitId)`). */
export class ArchiveProgress {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    readonly unitId: string,
  ) {
    if (!this.redis.adaggArchiveCommit) this.redis.defineCommand('adaggArchiveCommit', { numberOfKeys: 2, lua: COMMIT_LUA });
  }

  /** A new owner epoch: every earlier writer of this unit is fenced from now on. */
  acquire(): Promise<number> {
    return takeEpoch(this.redis, this.keys, this.unitId, `archiver ${this.unitId}`);
  }

  async read(): Promise<StoredProgress> {
    const h = await this.redis.hgetall(this.keys.archive(this.unitId));
    let pending: PendingPair[] = [];
    try {
      const p: unknown = JSON.parse(h.pending ?? '[]');
      if (Array.isArray(p)) pending = p.filter((x): x is PendingPair => Array.isArray(x) && typeof x[0] === 'string' && typeof x[1] === 'string');
    } catch {
      // an unreadable list is treated as none: the files it named were committed and renamed long ago or are re-archived
    }
    return { seq: Number(h.seq ?? 0), pending, clicks: Number(h.clicks ?? 0), files: Number(h.files ?? 0) };
  }

  /**
   * Records `seq` with this commit's file pairs. `rewind` lets the sequence go back (recovery of a
   * missing file); otherwise it must move forward. Throws ADAGG_E_FENCED when a newer epoch owns the unit.
   */
  async commit(epoch: number, c: { seq: number; pending: readonly PendingPair[]; rows: number; files: number; rewind?: boolean }): Promise<void> {
    const argv = [String(epoch), c.seq, JSON.stringify(c.pending), Date.now(), c.rows, c.files, c.rewind ? 'rewind' : 'advance', `${TOKEN_BASE}:${++tokens}`];
    try {
      await this.redis.adaggArchiveCommit(this.keys.epoch(this.unitId), this.keys.archive(this.unitId), ...argv);
      await awaitReplicas(this.redis, `archiver ${this.unitId}: commit of seq ${c.seq}`);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (msg.startsWith('FENCED')) {
        throw new AdaggError(ErrorCode.Fenced, `archiver ${this.unitId}: commit refused, epoch ${epoch} no longer owns it`, { cause: err, details: { unit: this.unitId, epoch } });
      }
      throw err;
    }
  }
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    adaggArchiveCommit(epochKey: string, progressKey: string, ...argv: Array<string | number>): Promise<number>;
  }
}


/**
 * Moves committed files to their final paths: a pair whose final file exists is done; one whose
 * staged file exists is renamed (mkdir -p first); the folders are fsynced. Returns the pairs with
 * neither file (lost: their range must be archived again). A concurrent rename of the same pair
 * (a fenced writer finishing its renames) is harmless: ENOENT with the final file present is done.
 */
export async function completeRenames(pairs: readonly PendingPair[]): Promise<PendingPair[]> {
  const missing: PendingPair[] = [];
  const dirs = new Set<string>();
  for (const [tmp, final] of pairs) {
    if (await fileExists(final)) continue;
    const dir = path.dirname(final);
    await mkdir(dir, { recursive: true });
    try {
      await rename(tmp, final);
      dirs.add(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      if (!(await fileExists(final))) missing.push([tmp, final]);
    }
  }
  for (const d of dirs) await fsyncPath(d);
  return missing;
}

/** The first sequence of a set of pairs' final file names (every file of one commit shares its range). */
export function rangeStart(pairs: readonly PendingPair[]): number | undefined {
  let min: number | undefined;
  for (const [, final] of pairs) {
    const f = parseFileName(path.basename(final));
    if (f && (min === undefined || f.fromSeq < min)) min = f.fromSeq;
  }
  return min;
}

/** Deletes the final files of pairs (a commit whose range is archived again). */
export async function removeFinals(pairs: readonly PendingPair[]): Promise<void> {
  for (const [, final] of pairs) await rm(final, { force: true });
}

/** Deletes every staged file of a unit (left by a crash or by a fenced writer). Returns how many. */
export async function clearStaging(dir: string): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
  for (const n of names) await rm(path.join(dir, n), { force: true });
  return names.length;
}
