import type { Redis } from 'ioredis';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { RedisKeys } from './redis-keys.ts';
import type { CountRead, CountWrite, FlatCounts, ShardCommit, ShardStore, StoredShard, UnitId } from './shard-store.ts';

/**
 * One fenced, atomic step: refuse unless the caller's epoch is the shard's current epoch and the
 * sequence does not go back; then SET final counts (absolute values, never increments), the
 * snapshot and the sequence together.
 * KEYS: epoch, meta, snap, count keys...  ARGV: epoch, seq, watermark, closedThrough, snapshot,
 * ttlMs, nowMs, then per count key: n, field1, value1, ... fieldN, valueN.
 */
const COMMIT_LUA = `
local cur = redis.call('GET', KEYS[1])
if cur ~= ARGV[1] then
  return redis.error_reply('FENCED epoch ' .. ARGV[1] .. ' is not the owner epoch ' .. tostring(cur))
end
local stored = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if tonumber(ARGV[2]) < stored then
  return redis.error_reply('SEQ_REGRESSION ' .. ARGV[2] .. ' < ' .. stored)
end
local ttl = tonumber(ARGV[6])
local a = 8
for k = 4, #KEYS do
  local n = tonumber(ARGV[a])
  a = a + 1
  local i = 0
  while i < n do
    local m = math.min(n - i, 500)
    local args = {}
    for j = 1, m do
      args[#args + 1] = ARGV[a]
      args[#args + 1] = ARGV[a + 1]
      a = a + 2
    end
    redis.call('HSET', KEYS[k], unpack(args))
    i = i + m
  end
  if ttl > 0 then redis.call('PEXPIRE', KEYS[k], ttl) end
end
redis.call('SET', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[2], 'seq', ARGV[2], 'watermark', ARGV[3], 'closedThrough', ARGV[4], 'epoch', ARGV[1], 'updatedAt', ARGV[7])
return 1
`;

export interface RedisShardStoreOptions {
  /** How long final counts are kept. @default 30 days */
  countTtlMs?: number;
  now?: () => number;
}

/** ShardStore on Redis (ioredis). Production Redis must run with AOF (appendonly yes) for durability. */
export class RedisShardStore implements ShardStore {
  private readonly ttlMs: number;
  private readonly now: () => number;
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    opts: RedisShardStoreOptions = {},
  ) {
    this.ttlMs = opts.countTtlMs ?? 30 * 24 * 3600_000;
    this.now = opts.now ?? Date.now;
    if (!this.redis.adaggCommit) this.redis.defineCommand('adaggCommit', { lua: COMMIT_LUA });
  }

  async acquire(shard: UnitId): Promise<number> {
    return this.redis.incr(this.keys.epoch(shard));
  }

  async load(shard: UnitId): Promise<StoredShard | null> {
    const [snap, seq] = await Promise.all([
      this.redis.getBuffer(this.keys.snapshot(shard)),
      this.redis.hget(this.keys.meta(shard), 'seq'),
    ]);
    if (!snap) return null;
    return { snapshot: new Uint8Array(snap.buffer, snap.byteOffset, snap.byteLength), seq: Number(seq ?? 0) };
  }

  async commit(shard: UnitId, epoch: number, c: ShardCommit): Promise<void> {
    const keys = [this.keys.epoch(shard), this.keys.meta(shard), this.keys.snapshot(shard)];
    const argv: Array<string | number | Buffer> = [
      String(epoch),
      c.seq,
      c.watermark,
      c.closedThrough,
      Buffer.from(c.snapshot.buffer, c.snapshot.byteOffset, c.snapshot.byteLength),
      this.ttlMs,
      this.now(),
    ];
    const index = new Map<number, string[]>();
    for (const w of c.writes) {
      keys.push(this.keys.counts(shard, w.minute, w.dim, w.value));
      // No spread: a minute of a busy shard holds 100k+ fields, past the call-stack argument limit.
      argv.push(w.counts.length / 2);
      for (const x of w.counts) argv.push(x);
      if (w.dim !== null) {
        let fields = index.get(w.minute);
        if (!fields) index.set(w.minute, (fields = []));
        fields.push(JSON.stringify([w.dim, w.value]), '1');
      }
    }
    // The per-minute index of dimension keys rides in the same atomic step, as one more hash.
    for (const [minute, fields] of index) {
      keys.push(this.keys.dimIndex(shard, minute));
      argv.push(fields.length / 2);
      for (const x of fields) argv.push(x);
    }
    try {
      // ioredis flattens array arguments, so nothing is spread onto the stack here either.
      await this.redis.adaggCommit(keys.length, keys, argv);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      if (msg.startsWith('FENCED')) {
        throw new AdaggError(ErrorCode.Fenced, `shard ${shard}: write refused, epoch ${epoch} no longer owns it`, {
          cause: err,
          details: { shard, epoch },
        });
      }
      throw err;
    }
  }

  async loadMinutes(shard: UnitId, from: number, to: number): Promise<CountWrite[]> {
    if (to <= from) return [];
    const p = this.redis.pipeline();
    for (let m = from; m < to; m++) {
      p.hgetall(this.keys.counts(shard, m, null, null));
      p.hkeys(this.keys.dimIndex(shard, m));
    }
    const res = (await p.exec()) ?? [];
    const out: CountWrite[] = [];
    const dimReads: Array<{ minute: number; dim: string; value: string }> = [];
    for (let i = 0, m = from; m < to; m++, i += 2) {
      const [e1, totals] = res[i]!;
      const [e2, dims] = res[i + 1]!;
      if (e1 || e2) throw e1 ?? e2;
      const flat = toFlat(totals as Record<string, string>);
      if (flat.length) out.push({ minute: m, dim: null, value: null, counts: flat });
      for (const f of dims as string[]) {
        const [dim, value] = JSON.parse(f) as [string, string];
        dimReads.push({ minute: m, dim, value });
      }
    }
    if (dimReads.length) {
      const p2 = this.redis.pipeline();
      for (const d of dimReads) p2.hgetall(this.keys.counts(shard, d.minute, d.dim, d.value));
      const res2 = (await p2.exec()) ?? [];
      res2.forEach(([err, h], i) => {
        if (err) throw err;
        const d = dimReads[i]!;
        out.push({ minute: d.minute, dim: d.dim, value: d.value, counts: toFlat(h as Record<string, string>) });
      });
    }
    return out;
  }

  async readCounts(shard: UnitId, reads: readonly CountRead[]): Promise<number[]> {
    const p = this.redis.pipeline();
    for (const r of reads) p.hget(this.keys.counts(shard, r.minute, r.dim, r.value), r.adId);
    const res = (await p.exec()) ?? [];
    return res.map(([err, v]) => {
      if (err) throw err;
      return Number(v ?? 0);
    });
  }
}

function toFlat(h: Record<string, string>): FlatCounts {
  const out: FlatCounts = [];
  for (const [k, v] of Object.entries(h)) out.push(k, Number(v));
  return out;
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    adaggCommit(numKeys: number, keys: string[], argv: Array<string | number | Buffer>): Promise<number>;
  }
}
