/**
 * Writes recompute's changes of one shard in ONE atomic Lua step (compare-and-set): every field must
 * still hold the value it was diffed against (`old`), else nothing is written and the step reports
 * the first field that moved, so the caller diffs again. Every key carries the shard's hash tag
 * (redis-keys.ts), so the step runs in one slot, on a Redis Cluster too.
 *
 * Only sealed minutes are written, and no live path writes a sealed minute (the actor refuses it),
 * so the compare-and-set guards against a second recompute or backfill running at the same time,
 * not against the shard actor; no epoch is needed.
 *
 * KEYS: the count hashes and dimension indexes the changes touch (each once).
 * ARGV: ttlMs, then per change 6 values: count key index, ad_id, old, new, dimIndex key index
 * (0 for a totals field), dimIndex field (JSON [dim, value]; '' for totals).
 * A new value of 0 deletes the field (and the index entry once the dimension's hash is empty); a
 * key that had no TTL (created here) gets ttlMs, an existing key keeps its own.
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../redis-keys.ts';
import type { FieldChange } from './recompute-diff.ts';

const APPLY_LUA = `
local ttl = tonumber(ARGV[1])
local n = (#ARGV - 1) / 6
for i = 0, n - 1 do
  local b = 2 + i * 6
  local cur = tonumber(redis.call('HGET', KEYS[tonumber(ARGV[b])], ARGV[b + 1]) or '0')
  if cur ~= tonumber(ARGV[b + 2]) then return {0, i, tostring(cur)} end
end
for i = 0, n - 1 do
  local b = 2 + i * 6
  local key = KEYS[tonumber(ARGV[b])]
  local new = tonumber(ARGV[b + 3])
  if new == 0 then redis.call('HDEL', key, ARGV[b + 1]) else redis.call('HSET', key, ARGV[b + 1], ARGV[b + 3]) end
  if new ~= 0 and ttl > 0 and redis.call('PTTL', key) == -1 then redis.call('PEXPIRE', key, ttl) end
  local ix = tonumber(ARGV[b + 4])
  if ix > 0 then
    local ik = KEYS[ix]
    if new ~= 0 then
      redis.call('HSET', ik, ARGV[b + 5], '1')
      if ttl > 0 and redis.call('PTTL', ik) == -1 then redis.call('PEXPIRE', ik, ttl) end
    elseif redis.call('EXISTS', key) == 0 then
      redis.call('HDEL', ik, ARGV[b + 5])
    end
  end
end
return {1, n, ''}`;

/** What the step did: `applied`, or the first field that no longer held its old value. */
export type ApplyOutcome = { applied: true; fields: number } | { applied: false; moved: FieldChange; found: number };

/** Runs the compare-and-set step for one shard's changes (all of `changes` must be of `shard`). */
export async function applyShardChanges(redis: Redis, keys: RedisKeys, shard: number, changes: readonly FieldChange[], ttlMs: number): Promise<ApplyOutcome> {
  if (changes.length === 0) return { applied: true, fields: 0 };
  const keyList: string[] = [];
  const index = new Map<string, number>();
  const keyIndex = (k: string): number => {
    let i = index.get(k);
    if (i === undefined) {
      keyList.push(k);
      index.set(k, (i = keyList.length));
    }
    return i;
  };
  const argv: Array<string | number> = [ttlMs];
  for (const c of changes) {
    if (c.shard !== shard) throw new Error(`recompute: a change of shard ${c.shard} in the step of shard ${shard}`);
    const k = keyIndex(keys.counts(shard, c.minute, c.dim, c.value));
    const totals = c.dim === null || c.value === null;
    const ix = totals ? 0 : keyIndex(keys.dimIndex(shard, c.minute));
    argv.push(k, c.ad_id, c.old, c.new, ix, totals ? '' : JSON.stringify([c.dim, c.value]));
  }
  // One argument array, never spread onto the call stack: a shard may change 100k+ fields.
  const args: Array<string | number> = [APPLY_LUA, keyList.length];
  for (const k of keyList) args.push(k);
  for (const a of argv) args.push(a);
  const res = (await redis.call('EVAL', args)) as [number, number, string];
  if (res[0] === 1) return { applied: true, fields: changes.length };
  return { applied: false, moved: changes[res[1]]!, found: Number(res[2]) };
}
