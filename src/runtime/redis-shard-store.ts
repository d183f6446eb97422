import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { Packr, Unpackr } from 'msgpackr';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { RedisKeys } from './redis-keys.ts';
import { awaitReplicas, waitsForReplicas } from './redis-replicas.ts';
import type { CountRead, CountWrite, FlatCounts, ShardCommit, ShardStore, StateReader, StoredShard, UnitId } from './shard-store.ts';
import { FENCED_STEP_PRELUDE } from './fenced-step-lua.ts';
import { takeEpoch } from './fencing-epoch.ts';

/**
 * One fenced, atomic step: refuse unless the caller's epoch is the shard's current epoch and the
 * sequence does not go back; then apply the commit's changes and write head and sequence together.
 * Every key carries the shard's hash tag, so the step stays in one slot (Redis Cluster too).
 *
 * KEYS: epoch, meta, head, parts index, then one key per change.
 * ARGV: epoch, seq, watermark, closedThrough, head, ttlMs, nowMs, commit token, then per change key
 * an opcode and its arguments:
 *   'M' packed             HSET on a count hash (minute counts, dimension index), which expires after
 *                          ttlMs; the fields come as one MessagePack array [f1, v1, …] (cmsgpack), so a
 *                          commit of 100k fields is one argument, not 200k
 *   'h' n f1 v1 … fn vn   HSET on a state part (indexed in the parts set, never expires on its own)
 *   'X' n f1 … fn         HDEL on a state part
 *   'A' bytes             APPEND to a state part (indexed)
 *   'D'                   DEL a state part (and drop it from the index)
 * A commit's size is what changed since the previous one: nothing here rewrites a whole state.
 *
 * The token (unique per commit call) makes the step idempotent: ioredis resends a call that was in
 * flight when its connection dropped, and after a Redis failover the new primary may already hold
 * that commit (replicated just before the old one died). Applied twice, its APPENDs would be
 * stored twice (read back once, but the state grows with every such repeat); so a commit whose
 * token is the stored one is acknowledged without running again.
 */
const COMMIT_LUA = `${FENCED_STEP_PRELUDE}
local stored = tonumber(redis.call('HGET', KEYS[2], 'seq') or '0')
if tonumber(ARGV[2]) < stored then
  return redis.error_reply('SEQ_REGRESSION ' .. ARGV[2] .. ' < ' .. stored)
end
local ttl = tonumber(ARGV[6])
local a = 9
for k = 5, #KEYS do
  local op = ARGV[a]
  a = a + 1
  if op == 'M' then
    local t = cmsgpack.unpack(ARGV[a])
    a = a + 1
    local n = #t
    local i = 1
    while i <= n do
      local j = math.min(i + 999, n)
      redis.call('HSET', KEYS[k], unpack(t, i, j))
      i = j + 1
    end
    if ttl > 0 then redis.call('PEXPIRE', KEYS[k], ttl) end
  elseif op == 'h' or op == 'X' then
    local n = tonumber(ARGV[a])
    a = a + 1
    local per = (op == 'X') and 1 or 2
    local i = 0
    while i < n do
      local m = math.min(n - i, 500)
      local args = {}
      for j = 1, m * per do
        args[j] = ARGV[a]
        a = a + 1
      end
      if op == 'X' then redis.call('HDEL', KEYS[k], unpack(args)) else redis.call('HSET', KEYS[k], unpack(args)) end
      i = i + m
    end
    if op == 'h' then redis.call('SADD', KEYS[4], KEYS[k]) end
  elseif op == 'A' then
    redis.call('APPEND', KEYS[k], ARGV[a])
    a = a + 1
    redis.call('SADD', KEYS[4], KEYS[k])
  elseif op == 'D' then
    redis.call('DEL', KEYS[k])
    redis.call('SREM', KEYS[4], KEYS[k])
  else
    return redis.error_reply('BAD_OP ' .. tostring(op))
  end
end
redis.call('SET', KEYS[3], ARGV[5])
redis.call('HSET', KEYS[2], 'seq', ARGV[2], 'watermark', ARGV[3], 'closedThrough', ARGV[4], 'epoch', ARGV[1], 'updatedAt', ARGV[7], 'commit', ARGV[8])
return 1
`;

/**
 * Every count of one minute (totals and each dimension value the minute's index names), read in one
 * atomic step. KEYS: the minute's totals hash, its dimension index. Returns one MessagePack blob
 * `[totals flat, [dim, value, flat], ...]` (decoded later, off the busy path). Dimension keys are
 * derived as RedisKeys.counts does (`<totals key>:<dim>=<encodeURIComponent(value)>`; all in the
 * shard's slot).
 */
const READ_MINUTE_LUA = `
local function enc(s)
  return (string.gsub(s, "[^%w%-_%.!~%*'%(%)]", function(c) return string.format('%%%02X', string.byte(c)) end))
end
local out = { redis.call('HGETALL', KEYS[1]) }
local idx = redis.call('HKEYS', KEYS[2])
for i = 1, #idx do
  local dv = cjson.decode(idx[i])
  out[#out + 1] = { dv[1], dv[2], redis.call('HGETALL', KEYS[1] .. ':' .. dv[1] .. '=' .. enc(dv[2])) }
end
return cmsgpack.pack(out)
`;

export interface RedisShardStoreOptions {
  /** How long final counts are kept. @default 30 days */
  countTtlMs?: number;
  now?: () => number;
  /**
   * A second connection for the restore's reads (head and parts), so they do not queue behind
   * other shards' commits and rankings warm-up reads. @default the main connection
   */
  restoreRedis?: Redis;
}

type Arg = string | number | Buffer;

/** Bytes of the deployment's dedupe secret (a SipHash-2-4 key). */
const DEDUP_SECRET_BYTES = 16;

/** Commit tokens: this process's random id and a counter (unique across processes and restarts). */
const TOKEN_BASE = randomBytes(8).toString('hex');
let tokens = 0;

const packer = new Packr({ useRecords: false });
const unpacker = new Unpackr({ useRecords: false });

/**
 * ShardStore on Redis (ioredis). Production Redis must run with AOF (appendonly yes) for durability.
 * When the connection carries a replica policy (ADAGG_REDIS_MIN_REPLICAS, redis-replicas.ts), a new
 * epoch, a commit and the dedupe secret count as written only once enough replicas have them, and a
 * restore reads only state that replicas have: what an actor builds on survives a failover.
 */
export class RedisShardStore implements ShardStore {
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly restoreRedis: Redis;
  constructor(
    private readonly redis: Redis,
    private readonly keys: RedisKeys,
    opts: RedisShardStoreOptions = {},
  ) {
    this.ttlMs = opts.countTtlMs ?? 30 * 24 * 3600_000;
    this.now = opts.now ?? Date.now;
    this.restoreRedis = opts.restoreRedis ?? redis;
    if (!this.redis.adaggCommit) this.redis.defineCommand('adaggCommit', { lua: COMMIT_LUA });
  }

  acquire(shard: UnitId): Promise<number> {
    return takeEpoch(this.redis, this.keys, shard, `shard ${shard}`);
  }

  async load(shard: UnitId): Promise<StoredShard | null> {
    const r = this.restoreRedis;
    if (waitsForReplicas(r)) {
      // The primary may hold a commit that no replica has (its WAIT failed, which is why this actor
      // restarts). Restoring from it and building on it would leave the next commits resting on
      // state a failover loses; so first make the replicas catch up with everything on the
      // primary (a write of our own, then WAIT, covers all earlier writes), or fail and retry.
      await r.hset(this.keys.meta(shard), 'syncedAt', this.now());
      await awaitReplicas(r, `shard ${shard}: restore`);
    }
    const [head, seq] = await Promise.all([r.getBuffer(this.keys.snapshot(shard)), r.hget(this.keys.meta(shard), 'seq')]);
    if (!head) return null;
    return { head: bytesOf(head), seq: Number(seq ?? 0) };
  }

  reader(shard: UnitId): StateReader {
    return {
      logs: async (parts) => {
        if (parts.length === 0) return [];
        const p = this.restoreRedis.pipeline();
        for (const name of parts) p.getBuffer(this.keys.part(shard, name));
        return ((await p.exec()) ?? []).map(([err, v]) => {
          if (err) throw err;
          return v ? bytesOf(v as Buffer) : null;
        });
      },
      hashes: async (parts) => {
        if (parts.length === 0) return [];
        const p = this.restoreRedis.pipeline();
        for (const name of parts) p.hgetall(this.keys.part(shard, name));
        return ((await p.exec()) ?? []).map(([err, v]) => {
          if (err) throw err;
          const h = v as Record<string, string>;
          const keys = Object.keys(h);
          return keys.length === 0 ? null : new Map(keys.map((k) => [k, h[k]!]));
        });
      },
      minutes: async (minutes) => (await this.packedMinutes(this.restoreRedis, shard, minutes))(),
    };
  }

  async commit(shard: UnitId, epoch: number, c: ShardCommit): Promise<number> {
    const keys = [this.keys.epoch(shard), this.keys.meta(shard), this.keys.snapshot(shard), this.keys.parts(shard)];
    const head = Buffer.from(c.head.buffer, c.head.byteOffset, c.head.byteLength);
    const argv: Arg[] = [String(epoch), c.seq, c.watermark, c.closedThrough, head, this.ttlMs, this.now(), `${TOKEN_BASE}:${++tokens}`];
    let bytes = head.byteLength + 64;
    // Count hashes travel packed (one argument each); no spread anywhere: one change can hold 100k+
    // fields, past the call-stack argument limit.
    const counts = (key: string, flat: FlatCounts): void => {
      const packed = packer.pack(flat);
      keys.push(key);
      argv.push('M', packed);
      bytes += packed.byteLength;
    };
    const hset = (key: string, flat: FlatCounts): void => {
      keys.push(key);
      argv.push('h', flat.length / 2);
      for (const x of flat) {
        argv.push(x);
        bytes += typeof x === 'string' ? x.length : 8;
      }
    };
    const index = new Map<number, FlatCounts>();
    for (const w of c.writes) {
      counts(this.keys.counts(shard, w.minute, w.dim, w.value), w.counts);
      if (w.dim !== null) {
        let fields = index.get(w.minute);
        if (!fields) index.set(w.minute, (fields = []));
        fields.push(JSON.stringify([w.dim, w.value]), '1');
      }
    }
    // The per-minute index of dimension keys rides in the same atomic step, as one more hash.
    for (const [minute, fields] of index) counts(this.keys.dimIndex(shard, minute), fields);
    for (const op of c.ops) {
      const key = this.keys.part(shard, op.part);
      switch (op.kind) {
        case 'append':
          keys.push(key);
          argv.push('A', Buffer.from(op.bytes.buffer, op.bytes.byteOffset, op.bytes.byteLength));
          bytes += op.bytes.byteLength;
          break;
        case 'hset':
          hset(key, op.fields);
          break;
        case 'hdel':
          keys.push(key);
          argv.push('X', op.fields.length);
          for (const f of op.fields) {
            argv.push(f);
            bytes += f.length;
          }
          break;
        case 'del':
          keys.push(key);
          argv.push('D');
          break;
      }
    }
    try {
      // ioredis flattens array arguments, so nothing is spread onto the stack here either.
      await this.redis.adaggCommit(keys.length, keys, argv);
      // Not acknowledged unless replicated: the actor then fails and restores (see load).
      await awaitReplicas(this.redis, `shard ${shard}: commit of seq ${c.seq}`);
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
    return bytes;
  }

  async dedupSecret(): Promise<Uint8Array> {
    const key = this.keys.dedupSecret();
    // SET NX: of nodes starting together, the first one's random secret wins; all then read it.
    await this.redis.set(key, randomBytes(DEDUP_SECRET_BYTES), 'NX');
    const secret = await this.redis.getBuffer(key);
    if (secret?.byteLength !== DEDUP_SECRET_BYTES) {
      throw new AdaggError(ErrorCode.SnapshotCorrupt, `the dedupe secret ${key} holds ${secret?.byteLength ?? 0} bytes, not ${DEDUP_SECRET_BYTES}`);
    }
    if (waitsForReplicas(this.redis)) {
      // A secret lost in a failover would be replaced by another, and every stored dedupe table
      // refused. Another node's SET NX may be unreplicated yet: rewrite the same value (a write of
      // ours) so that WAIT covers it.
      await this.redis.set(key, secret, 'XX');
      await awaitReplicas(this.redis, 'the dedupe secret');
    }
    return new Uint8Array(secret);
  }

  async loadMinutes(shard: UnitId, from: number, to: number): Promise<CountWrite[]> {
    const minutes: number[] = [];
    for (let m = from; m < to; m++) minutes.push(m);
    return (await this.packedMinutes(this.redis, shard, minutes))();
  }

  /**
   * All counts of the given closed minutes, each minute read atomically. The reads are queued on
   * this connection before the call returns, so Redis serves them before any commit issued
   * afterwards: the result is the state as of the last commit before the call, whenever it arrives
   * (the live rankings warm up from it while the actor already consumes). It arrives packed; the
   * returned function decodes it, so the caller chooses when to spend that CPU.
   */
  closedMinutes(shard: UnitId, minutes: readonly number[]): Promise<() => CountWrite[]> {
    return this.packedMinutes(this.redis, shard, minutes);
  }

  /** Every count of the minutes, each minute one atomic Lua read returning one packed blob. */
  private packedMinutes(redis: Redis, shard: UnitId, minutes: readonly number[]): Promise<() => CountWrite[]> {
    if (minutes.length === 0) return Promise.resolve(() => []);
    const p = redis.pipeline();
    // Plain EVAL, not EVALSHA: a NOSCRIPT retry would be sent after later commands.
    for (const m of minutes) p.callBuffer('EVAL', [READ_MINUTE_LUA, 2, this.keys.counts(shard, m, null, null), this.keys.dimIndex(shard, m)]);
    return p.exec().then((res) => {
      const blobs = (res ?? []).map(([err, v]) => {
        if (err) throw err;
        return v as Buffer;
      });
      return () => {
        const out: CountWrite[] = [];
        blobs.forEach((blob, i) => {
          const minute = minutes[i]!;
          const [totals, ...dims] = unpacker.unpack(blob) as [Array<string | number>, ...Array<[string, string, Array<string | number>]>];
          if (totals.length) out.push({ minute, dim: null, value: null, counts: numericValues(totals) });
          for (const [dim, value, flat] of dims) out.push({ minute, dim, value, counts: numericValues(flat) });
        });
        return out;
      };
    });
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

function bytesOf(b: Buffer): Uint8Array {
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** `[field, value, ...]` as Redis returns a hash (values as strings), with numeric values, in place. */
function numericValues(flat: Array<string | number>): FlatCounts {
  for (let i = 1; i < flat.length; i += 2) flat[i] = Number(flat[i]);
  return flat;
}

declare module 'ioredis' {
  interface RedisCommander<Context> {
    adaggCommit(numKeys: number, keys: string[], argv: Array<string | number | Buffer>): Promise<number>;
  }
}
