/**
 * The aggregate archive's progress and lock in Redis (keys.aggArchive, keys.aggArchiveLock).
 * Progress is a hash: `start` and `through` (first and last archived hour, epoch ms of their
 * start), `evicted` (last hour whose counts were deleted from Redis). Readers (the tiered queries)
 * read `start`/`through`; only the lock holder moves them, each move one Lua step that first checks
 * the holder's token, so a runner that lost its lock (paused past the lock's expiry) cannot move the
 * progress over a newer runner's.
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../redis-keys.ts';

/** Archived hours [start, through] (epoch ms of hour starts); absent before the first hour is archived. */
export interface AggProgress {
  start: number;
  through: number;
  /** Last hour deleted from Redis (−1: none). */
  evicted: number;
}

/** The progress, or undefined when nothing is archived yet. */
export async function readAggProgress(redis: Redis, keys: RedisKeys): Promise<AggProgress | undefined> {
  const [start, through, evicted] = await redis.hmget(keys.aggArchive(), 'start', 'through', 'evicted');
  if (start === null || through === null || start === undefined || through === undefined) return undefined;
  return { start: Number(start), through: Number(through), evicted: evicted === null || evicted === undefined ? -1 : Number(evicted) };
}

// KEYS[1] lock, KEYS[2] progress; ARGV[1] token, then field/value pairs. 1: set; 0: lock lost.
const FENCED_HSET = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
return 1`;

// KEYS[1] lock; ARGV[1] token, ARGV[2] ms. Takes a free lock or extends our own: 1, else 0.
const TAKE_OR_EXTEND = `
local cur = redis.call('GET', KEYS[1])
if cur == false then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0`;

// KEYS[1] lock; ARGV[1] token.
const RELEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

/** The runner's lock: one token per runner; take/extend before each step, fence each progress write. */
export class AggLock {
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    readonly token: string,
  ) {}

  /** Takes the lock if free, or extends it if ours, for `ms`; true when this runner holds it. */
  async hold(ms: number): Promise<boolean> {
    return (await this.redis.eval(TAKE_OR_EXTEND, 1, this.keys.aggArchiveLock(), this.token, String(ms))) === 1;
  }

  /** Sets progress fields if this runner still holds the lock; false when it lost it. */
  async setProgress(fields: Record<string, number>): Promise<boolean> {
    const args = Object.entries(fields).flatMap(([k, v]) => [k, String(v)]);
    return (await this.redis.eval(FENCED_HSET, 2, this.keys.aggArchiveLock(), this.keys.aggArchive(), this.token, ...args)) === 1;
  }

  async release(): Promise<void> {
    await this.redis.eval(RELEASE, 1, this.keys.aggArchiveLock(), this.token);
  }
}
