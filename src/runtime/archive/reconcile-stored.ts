/**
 * The stored side of reconciliation, read from Redis: how far each shard was applied and closed
 * (its meta hash), how far its archiver got (the progress hash), and the final counts per
 * ad-minute. A minute's total for an ad is its `count` field in the totals hash plus its invalid
 * fields (`('!inv', rule)`, src/model/risk-fields.ts): clicks the risk rules took are still clicks.
 * Only the totals and `!inv` hashes are read, not every dimension value of the minute.
 */
import type { Redis } from 'ioredis';
import { INVALID_DIM } from '../../model/risk-fields.ts';
import type { RedisKeys } from '../redis-keys.ts';

/** A shard's applied and closed positions, and how far its archiver got. */
export interface ShardPosition {
  shard: number;
  /** Last stream sequence applied and committed (meta `seq`; 0 never committed). */
  seq: number;
  /** Minutes through this index are final (meta `closedThrough`; -Infinity when none). */
  closedThrough: number;
  /** Last sequence of the shard's subject in the archive (progress hash of `a-s<shard>`; 0 none). */
  archived: number;
}

/** Minutes read per pipeline round trip. */
const MINUTES_PER_ROUND = 120;

/** Every shard's position (one pipeline). */
export async function shardPositions(redis: Redis, keys: RedisKeys, shards: number): Promise<ShardPosition[]> {
  const p = redis.pipeline();
  for (let s = 0; s < shards; s++) {
    p.hmget(keys.meta(s), 'seq', 'closedThrough');
    p.hget(keys.archive(`a-s${s}`), 'seq');
  }
  const res = (await p.exec()) ?? [];
  const out: ShardPosition[] = [];
  for (let s = 0; s < shards; s++) {
    const [e1, meta] = res[2 * s] ?? [null, null];
    const [e2, archived] = res[2 * s + 1] ?? [null, null];
    if (e1) throw e1;
    if (e2) throw e2;
    const [seq, closed] = (meta as Array<string | null> | null) ?? [null, null];
    out.push({
      shard: s,
      seq: Number(seq ?? 0),
      closedThrough: closed === null || closed === undefined || closed === '' ? -Infinity : Number(closed),
      archived: Number((archived as string | null) ?? 0),
    });
  }
  return out;
}

/**
 * Stored clicks (valid + invalid) of the given minutes of one shard, handed to `emit` one field at
 * a time (an ad's `!inv` fields follow its totals field, so one ad-minute may come in several
 * parts: the caller sums them). Reads a few minutes per round trip and keeps nothing itself, so a
 * day of millions of ad-minutes streams into DuckDB instead of piling up in JavaScript maps.
 */
export async function readStoredCounts(
  redis: Redis,
  keys: RedisKeys,
  shard: number,
  minutes: readonly number[],
  emit: (minute: number, adId: string, clicks: number) => void,
): Promise<void> {
  for (let i = 0; i < minutes.length; i += MINUTES_PER_ROUND) {
    const batch = minutes.slice(i, i + MINUTES_PER_ROUND);
    const p = redis.pipeline();
    for (const m of batch) {
      p.hgetall(keys.counts(shard, m, null, null));
      p.hkeys(keys.dimIndex(shard, m));
    }
    const res = (await p.exec()) ?? [];
    const invalid: Array<{ minute: number; rule: string }> = [];
    batch.forEach((m, j) => {
      const [e1, totals] = res[2 * j] ?? [null, {}];
      const [e2, index] = res[2 * j + 1] ?? [null, []];
      if (e1) throw e1;
      if (e2) throw e2;
      for (const [ad, n] of Object.entries(totals as Record<string, string>)) emit(m, ad, Number(n));
      for (const field of index as string[]) {
        const [dim, value] = JSON.parse(field) as [string, string];
        if (dim === INVALID_DIM) invalid.push({ minute: m, rule: value });
      }
    });
    if (invalid.length === 0) continue;
    const q = redis.pipeline();
    for (const { minute, rule } of invalid) q.hgetall(keys.counts(shard, minute, INVALID_DIM, rule));
    const inv = (await q.exec()) ?? [];
    invalid.forEach(({ minute }, j) => {
      const [err, h] = inv[j] ?? [null, {}];
      if (err) throw err;
      for (const [ad, n] of Object.entries(h as Record<string, string>)) emit(minute, ad, Number(n));
    });
  }
}
