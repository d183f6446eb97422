/**
 * The stored side of recompute: every count field of some minutes of one shard, read from Redis
 * (the totals hash, the minute's dimension index `dimIndex`, and each dimension value's hash), a
 * few minutes per pipelined round trip.
 */
import type { Redis } from 'ioredis';
import type { RedisKeys } from '../redis-keys.ts';
import { fieldKey, type FieldValues } from './recompute-diff.ts';

/** Minutes read per round trip. */
const MINUTES_PER_ROUND = 60;

function check<T>(res: [Error | null, unknown] | undefined): T {
  if (!res) throw new Error('recompute: a pipelined read returned nothing');
  if (res[0]) throw res[0];
  return res[1] as T;
}

/**
 * Adds the stored fields of `shard`'s `minutes` to `out` (only `ads`' fields when given). Fields
 * holding 0 are left out: a missing field reads as 0 anyway.
 */
export async function readStoredFields(
  redis: Redis,
  keys: RedisKeys,
  shard: number,
  minutes: readonly number[],
  ads: ReadonlySet<string> | undefined,
  out: FieldValues,
): Promise<void> {
  const add = (minute: number, dim: string | null, value: string | null, h: Record<string, string>): void => {
    for (const [ad_id, n] of Object.entries(h)) {
      if (ads && !ads.has(ad_id)) continue;
      const v = Number(n);
      if (v !== 0) out.set(fieldKey({ shard, minute, dim, value, ad_id }), v);
    }
  };
  for (let i = 0; i < minutes.length; i += MINUTES_PER_ROUND) {
    const batch = minutes.slice(i, i + MINUTES_PER_ROUND);
    const p = redis.pipeline();
    for (const m of batch) {
      p.hgetall(keys.counts(shard, m, null, null));
      p.hkeys(keys.dimIndex(shard, m));
    }
    const res = (await p.exec()) ?? [];
    const dims: Array<{ minute: number; dim: string; value: string }> = [];
    batch.forEach((m, j) => {
      add(m, null, null, check<Record<string, string>>(res[2 * j]));
      for (const f of check<string[]>(res[2 * j + 1])) {
        const [dim, value] = JSON.parse(f) as [string, string];
        dims.push({ minute: m, dim, value });
      }
    });
    for (let k = 0; k < dims.length; k += 1000) {
      const part = dims.slice(k, k + 1000);
      const q = redis.pipeline();
      for (const d of part) q.hgetall(keys.counts(shard, d.minute, d.dim, d.value));
      const got = (await q.exec()) ?? [];
      part.forEach((d, j) => add(d.minute, d.dim, d.value, check<Record<string, string>>(got[j])));
    }
  }
}
