/**
 * The aggregate archive's side of Redis: every count field of the minutes of one hour (totals hash,
 * then each (dim, value) hash the minute's dimension index names), whether an hour holds any count,
 * and deleting an hour's count hashes once it is archived (ADAGG_HOT_RETENTION).
 * One pipeline per shard and step, so an hour of a large deployment is a few round trips.
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../redis-keys.ts';
import type { AggRow } from './aggregate-files.ts';
import { HOUR_MINUTES } from './aggregate-layout.ts';

function check<T>(res: Array<[Error | null, unknown]> | null, i: number): T {
  const [err, v] = res?.[i] ?? [null, undefined];
  if (err) throw err;
  return v as T;
}

/** The (dim, value) pairs a minute's dimension index names. */
function parseIndex(fields: readonly string[]): Array<[string, string]> {
  return fields.map((f) => JSON.parse(f) as [string, string]);
}

/**
 * Hands every stored count field of the hour starting at epoch minute `hour` to `emit`, shard by
 * shard (an ad lives in one shard, so rows never repeat). Returns the number of rows.
 */
export async function readHourCounts(
  redis: Redis,
  keys: RedisKeys,
  shards: number,
  hour: number,
  emit: (r: AggRow) => void,
  /** Called after each shard (the archiver extends its lock). */
  afterShard: () => Promise<void> = () => Promise.resolve(),
): Promise<number> {
  let rows = 0;
  for (let s = 0; s < shards; s++) {
    if (s > 0) await afterShard();
    const p = redis.pipeline();
    // HGETALL as a flat reply: ioredis's object form costs about 2.5 times as much on large hashes.
    for (let m = hour; m < hour + HOUR_MINUTES; m++) {
      p.call('HGETALL', keys.counts(s, m, null, null));
      p.hkeys(keys.dimIndex(s, m));
    }
    const res = await p.exec();
    const dimKeys: Array<{ m: number; dim: string; value: string }> = [];
    for (let i = 0; i < HOUR_MINUTES; i++) {
      const m = hour + i;
      const flat = check<string[]>(res, 2 * i);
      for (let j = 0; j + 1 < flat.length; j += 2) emit({ minute: m, ad_id: flat[j]!, dim: null, value: null, count: Number(flat[j + 1]) });
      rows += flat.length / 2;
      for (const [dim, value] of parseIndex(check<string[]>(res, 2 * i + 1))) dimKeys.push({ m, dim, value });
    }
    if (dimKeys.length === 0) continue;
    const q = redis.pipeline();
    for (const k of dimKeys) q.call('HGETALL', keys.counts(s, k.m, k.dim, k.value));
    const dres = await q.exec();
    dimKeys.forEach((k, j) => {
      const flat = check<string[]>(dres, j);
      for (let i = 0; i + 1 < flat.length; i += 2) emit({ minute: k.m, ad_id: flat[i]!, dim: k.dim, value: k.value, count: Number(flat[i + 1]) });
      rows += flat.length / 2;
    });
  }
  return rows;
}

/** Whether any shard stores a count in the hour starting at epoch minute `hour`. */
export async function hourHasCounts(redis: Redis, keys: RedisKeys, shards: number, hour: number): Promise<boolean> {
  const p = redis.pipeline();
  for (let s = 0; s < shards; s++) {
    for (let m = hour; m < hour + HOUR_MINUTES; m++) {
      p.exists(keys.counts(s, m, null, null));
      p.exists(keys.dimIndex(s, m));
    }
  }
  const res = (await p.exec()) ?? [];
  return res.some((_, i) => check<number>(res, i) > 0);
}

/** Deletes every count hash and dimension index of the hour starting at epoch minute `hour`. Returns the keys deleted. */
export async function evictHour(redis: Redis, keys: RedisKeys, shards: number, hour: number): Promise<number> {
  let deleted = 0;
  for (let s = 0; s < shards; s++) {
    const p = redis.pipeline();
    for (let m = hour; m < hour + HOUR_MINUTES; m++) p.hkeys(keys.dimIndex(s, m));
    const res = await p.exec();
    const del = redis.pipeline();
    for (let i = 0; i < HOUR_MINUTES; i++) {
      const m = hour + i;
      for (const [dim, value] of parseIndex(check<string[]>(res, i))) del.del(keys.counts(s, m, dim, value));
      del.del(keys.counts(s, m, null, null));
      del.del(keys.dimIndex(s, m));
    }
    const dres = (await del.exec()) ?? [];
    dres.forEach((_, i) => (deleted += check<number>(dres, i)));
  }
  return deleted;
}
