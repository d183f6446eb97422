import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { RedisShardStore } from '../../src/runtime/redis-shard-store.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';

/** The store at production sizes: one busy minute holds hundreds of thousands of ads. */
describe('RedisShardStore with large minutes', () => {
  let servers: TestServers;
  let redis: Redis;
  beforeAll(async () => {
    servers = await startTestServers();
    redis = new Redis(servers.redisUrl);
  });
  afterAll(async () => {
    redis?.disconnect();
    await servers?.stop();
  });

  it('creates one dedupe secret per deployment on first use, the same for every connection that races for it', async () => {
    const prefix = uniquePrefix();
    const conns = Array.from({ length: 4 }, () => new Redis(servers.redisUrl));
    try {
      const secrets = await Promise.all(conns.map((c) => new RedisShardStore(c, new RedisKeys(prefix)).dedupSecret()));
      for (const s of secrets) expect(Buffer.from(s).equals(Buffer.from(secrets[0]!))).toBe(true);
      expect(secrets[0]!.byteLength).toBe(16);
      expect(Buffer.from(secrets[0]!).equals(Buffer.alloc(16))).toBe(false);
      // Read again later: unchanged. Another deployment (prefix) has its own.
      expect(Buffer.from(await new RedisShardStore(redis, new RedisKeys(prefix)).dedupSecret()).equals(Buffer.from(secrets[0]!))).toBe(true);
      expect(Buffer.from(await new RedisShardStore(redis, new RedisKeys(uniquePrefix())).dedupSecret()).equals(Buffer.from(secrets[0]!))).toBe(false);
      // A damaged secret is refused rather than used.
      await redis.set(new RedisKeys(prefix).dedupSecret(), 'short');
      await expect(new RedisShardStore(redis, new RedisKeys(prefix)).dedupSecret()).rejects.toMatchObject({ code: 'ADAGG_E_SNAPSHOT_CORRUPT' });
    } finally {
      for (const c of conns) c.disconnect();
    }
  });

  // Regression: the commit once spread every field onto the call stack and failed with
  // "Maximum call stack size exceeded" for minutes of ~100k ads (seen in the 2M-ad benchmark).
  it('commits and reloads a minute of 300,000 ads and a country dimension atomically', async () => {
    const store = new RedisShardStore(redis, new RedisKeys(uniquePrefix()));
    const epoch = await store.acquire(0);
    const totals: Array<string | number> = [];
    const us: Array<string | number> = [];
    for (let i = 0; i < 300_000; i++) {
      totals.push(`ad-${i}`, (i % 7) + 1);
      if (i % 3 === 0) us.push(`ad-${i}`, 1);
    }
    await store.commit(0, epoch, {
      seq: 42,
      watermark: 0,
      closedThrough: 100,
      head: new Uint8Array([1, 2, 3]),
      ops: [],
      writes: [
        { minute: 100, dim: null, value: null, counts: totals },
        { minute: 100, dim: 'country', value: 'US', counts: us },
      ],
    });
    const back = await store.loadMinutes(0, 100, 101);
    const t = back.find((w) => w.dim === null)!;
    const u = back.find((w) => w.dim === 'country')!;
    expect(t.counts.length).toBe(600_000);
    expect(u.value).toBe('US');
    expect(u.counts.length).toBe(200_000);
    const m = new Map<string, number>();
    for (let i = 0; i < t.counts.length; i += 2) m.set(t.counts[i] as string, t.counts[i + 1] as number);
    expect(m.get('ad-299999')).toBe((299_999 % 7) + 1);
    expect(await store.readCounts(0, [{ minute: 100, dim: 'country', value: 'US', adId: 'ad-3' }])).toEqual([1]);
    expect((await store.load(0))!.seq).toBe(42);
  });

  it('closedMinutes reads the state as of the call, even with a commit issued right after it', async () => {
    const keys = new RedisKeys(uniquePrefix());
    const store = new RedisShardStore(redis, keys);
    const epoch = await store.acquire(0);
    const base = { watermark: 0, closedThrough: 10, head: new Uint8Array([1]), ops: [] };
    await store.commit(0, epoch, {
      ...base,
      seq: 1,
      writes: [
        { minute: 10, dim: null, value: null, counts: ['a', 1, 'b', 2] },
        { minute: 10, dim: 'country', value: 'ü s/1', counts: ['a', 1] },
      ],
    });
    const read = store.closedMinutes(0, [9, 10]);
    const late = store.commit(0, epoch, { ...base, seq: 2, writes: [{ minute: 10, dim: null, value: null, counts: ['a', 5] }] });
    const [decode] = await Promise.all([read, late]);
    const minutes = decode();
    expect(minutes).toEqual([
      { minute: 10, dim: null, value: null, counts: ['a', 1, 'b', 2] },
      { minute: 10, dim: 'country', value: 'ü s/1', counts: ['a', 1] },
    ]);
    expect((await store.closedMinutes(0, [10]))()).toEqual([
      { minute: 10, dim: null, value: null, counts: ['a', 5, 'b', 2] },
      { minute: 10, dim: 'country', value: 'ü s/1', counts: ['a', 1] },
    ]);
  });
});
