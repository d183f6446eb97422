import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOptions, type CompiledOptions } from '../../src/options.ts';
import { PlacementStore } from '../../src/runtime/placement/placement-store.ts';
import { openRedis } from '../../src/runtime/redis-connect.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { RedisShardStore } from '../../src/runtime/redis-shard-store.ts';
import type { ShardCommit } from '../../src/runtime/shard-store.ts';
import { startRedisHa, type RedisHa } from '../helpers/redis-ha.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';

/**
 * ADAGG_REDIS_MIN_REPLICAS (issue 13, Redis HA): a commit, a new epoch, a placement change and the
 * dedupe secret count as written only once enough replicas have them. Without a replica they fail
 * with ADAGG_E_REDIS_UNAVAILABLE (before: they were acknowledged by the primary alone, and a
 * failover could lose them, epochs included). With the default 0 nothing changes.
 */
describe('WAIT for replicas on durable writes', () => {
  let lone: TestServers;
  let ha: RedisHa;
  const conns: Redis[] = [];
  beforeAll(async () => {
    [lone, ha] = await Promise.all([startTestServers(), startRedisHa({ replicas: 1 })]);
  }, 120_000);
  afterAll(async () => {
    conns.forEach((c) => c.disconnect());
    await Promise.all([lone?.stop(), ha?.stop()]);
  });

  const open = async (redisUrl: string, o: Partial<CompiledOptions>): Promise<Redis> => {
    const r = await openRedis({ ...compileOptions({ redisWaitTimeoutMs: 300, ...o }), redisUrl }, 'state');
    conns.push(r);
    return r;
  };
  const commit = (seq: number): ShardCommit => ({
    seq,
    watermark: 0,
    closedThrough: 0,
    head: new Uint8Array([seq]),
    ops: [],
    writes: [{ minute: 100, dim: null, value: null, counts: ['ad-1', seq] }],
  });

  it('refuses a commit, an epoch, a placement change and the dedupe secret that no replica acknowledged', async () => {
    const redis = await open(lone.redisUrl, { redisMinReplicas: 1 });
    const keys = new RedisKeys(uniquePrefix());
    const store = new RedisShardStore(redis, keys);
    const unavailable = { code: 'ADAGG_E_REDIS_UNAVAILABLE' };
    await expect(store.acquire(0)).rejects.toMatchObject(unavailable);
    await expect(store.dedupSecret()).rejects.toMatchObject(unavailable);
    const placement = new PlacementStore(redis, keys, { shards: 1, heartbeatTimeoutMs: 5000 });
    await expect(placement.assign(0, 'node-a', Date.now())).rejects.toMatchObject(unavailable);
    // The epoch the refused assign wrote on the primary (it may still be applied: documented).
    const epoch = Number(await redis.get(keys.epoch(0)));
    await expect(store.commit(0, epoch, commit(7))).rejects.toMatchObject(unavailable);
    // A restore does not read what no replica has: it fails (and the actor retries) instead.
    await expect(store.load(0)).rejects.toMatchObject(unavailable);
  });

  it('keeps today’s behaviour with ADAGG_REDIS_MIN_REPLICAS=0 (the default): no replica needed', async () => {
    const redis = await open(lone.redisUrl, {});
    const store = new RedisShardStore(redis, new RedisKeys(uniquePrefix()));
    const epoch = await store.acquire(0);
    await store.commit(0, epoch, commit(3));
    expect((await store.load(0))!.seq).toBe(3);
  });

  it('acknowledges once a replica has the write, and the replica holds it at that moment', async () => {
    const primary = ha.dataPorts[0]!;
    const redis = await open(`redis://127.0.0.1:${primary}`, { redisMinReplicas: 1 });
    const keys = new RedisKeys(uniquePrefix());
    const store = new RedisShardStore(redis, keys);
    await store.dedupSecret();
    const epoch = await store.acquire(0);
    await store.commit(0, epoch, commit(5));
    const replica = ha.connect(ha.dataPorts[1]!);
    conns.push(replica);
    // Read from the replica right after the acknowledgement: already there.
    expect(await replica.hget(keys.meta(0), 'seq')).toBe('5');
    expect(await replica.get(keys.epoch(0))).toBe(String(epoch));
    expect((await store.load(0))!.seq).toBe(5);
  });

  it('refuses a WAIT timeout that outlasts the call deadline', () => {
    expect(() => compileOptions({ redisMinReplicas: 1, redisWaitTimeoutMs: 10_000, redisStateTimeoutMs: 10_000 })).toThrow(/redisWaitTimeoutMs/);
    expect(() => compileOptions({ redisWaitTimeoutMs: 10_000, redisStateTimeoutMs: 10_000 })).not.toThrow();
  });
});
