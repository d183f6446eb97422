import { decode, encode } from '../../src/model/msgpack.ts';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fnv1a32Utf16, murmur3_32 } from '../../src/actors/shard/click-hash.ts';
import { MINUTE_MS } from '../../src/model/time.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * A shard whose state an earlier release wrote is migrated in place by the current one:
 * - a whole-state MessagePack snapshot (format 1): its open counts and dedupe ids carry on exactly,
 *   its first commit replaces the blob with a format-4 head and parts;
 * - an incremental state with unkeyed dedupe hashes (format 3): its ids keep deduping (checked with
 *   the unkeyed hash) while new ids are recorded keyed, until the horizon drops the legacy blocks.
 * A restart after that restores from the new format.
 */
describe('state written by an earlier release', () => {
  let servers: TestServers;
  let redis: Redis;
  let stack: TestStack | undefined;
  beforeAll(async () => {
    servers = await startTestServers();
    redis = new Redis(servers.redisUrl);
  });
  afterAll(async () => {
    await stack?.close();
    redis?.disconnect();
    await servers?.stop();
  });

  it('a format-1 snapshot is migrated: counts and dedupe carry on, the blob becomes a head with parts', async () => {
    const prefix = uniquePrefix();
    const keys = new RedisKeys(prefix);
    const now = Date.now();
    const m = Math.floor(now / MINUTE_MS);
    const ts = m * MINUTE_MS + 5_000;
    // Two clicks of ad-x (one in US) counted by the old release in the open minute m, ids c1 and c2.
    const dedup = new Uint8Array(4 + 2 * 12);
    const dv = new DataView(dedup.buffer);
    dv.setUint32(0, 2, true);
    ['c1', 'c2'].forEach((id, i) => {
      dv.setUint32(4 + i * 12, fnv1a32Utf16(id), true);
      dv.setUint32(8 + i * 12, murmur3_32(id), true);
      dv.setInt32(12 + i * 12, m, true);
    });
    const legacy = encode([1, 0, 0, ts, ts - 5_000, m - 1, [[m, ['ad-x', 2], [['country', 'US', ['ad-x', 1]]]]], dedup]);
    await redis.set(keys.snapshot(0), Buffer.from(legacy));
    await redis.hset(keys.meta(0), 'seq', '0', 'watermark', String(ts - 5_000), 'closedThrough', String(m - 1), 'epoch', '0');

    stack = await startStack({ prefix, shards: 1 }, servers);
    const url = stack.url;
    const post = await postClicks(url, [
      JSON.stringify({ click_id: 'c1', ad_id: 'ad-x', ts, country: 'US' }), // counted before the upgrade
      JSON.stringify({ click_id: 'c3', ad_id: 'ad-x', ts, country: 'US' }),
      JSON.stringify({ click_id: 'c4', ad_id: 'ad-y', ts }),
    ]);
    expect(post.status).toBe(200);
    const count = async (ad: string, filter = ''): Promise<number> =>
      (await getJson(`${url}/v1/ads/${ad}/aggregated_count?from=${m * MINUTE_MS}&to=${(m + 1) * MINUTE_MS}${filter}`)).body.count as number;
    await waitFor('the new clicks counted', async () => (await count('ad-y')) === 1, { timeoutMs: 30_000, everyMs: 100 });
    expect(await count('ad-x')).toBe(3);
    expect(await count('ad-x', '&country=US')).toBe(2);

    // The first commit after the restore replaced the blob by a format-4 head and wrote the parts.
    await waitFor('a format-4 head committed', async () => {
      const head = await redis.getBuffer(keys.snapshot(0));
      return head !== null && (decode(head) as unknown[])[0] === 4;
    }, { timeoutMs: 30_000, everyMs: 100 });
    // c1, c2 (migrated, unkeyed) in the minute's legacy block; c1 (seen again), c3, c4 keyed in its
    // keyed block: 8 bytes each, both listed in the parts set.
    await waitFor('every id in the dedupe blocks', async () => (await redis.strlen(keys.part(0, `d${m}`))) === 2 * 8 && (await redis.strlen(keys.part(0, `k${m}`))) === 3 * 8, { timeoutMs: 30_000, everyMs: 100 });
    expect(await redis.smembers(keys.parts(0))).toEqual(expect.arrayContaining([keys.part(0, `d${m}`), keys.part(0, `k${m}`)]));

    // Restart: the state now comes from the head and parts; the ids are still known.
    await stack.close();
    stack = await startStack({ prefix, shards: 1 }, servers);
    await postClicks(stack.url, [
      JSON.stringify({ click_id: 'c2', ad_id: 'ad-x', ts }),
      JSON.stringify({ click_id: 'c3', ad_id: 'ad-x', ts, country: 'US' }),
      JSON.stringify({ click_id: 'c5', ad_id: 'ad-y', ts }),
    ]);
    const url2 = stack.url;
    const count2 = async (ad: string, filter = ''): Promise<number> =>
      (await getJson(`${url2}/v1/ads/${ad}/aggregated_count?from=${m * MINUTE_MS}&to=${(m + 1) * MINUTE_MS}${filter}`)).body.count as number;
    await waitFor('c5 counted after the restart', async () => (await count2('ad-y')) === 2, { timeoutMs: 30_000, everyMs: 100 });
    expect(await count2('ad-x')).toBe(3);
    expect(await count2('ad-x', '&country=US')).toBe(2);
    await stack.close();
    stack = undefined;
  });

  it('a format-3 state (unkeyed dedupe hashes) keeps deduping its ids until the horizon drops its blocks', async () => {
    const prefix = uniquePrefix();
    const keys = new RedisKeys(prefix);
    const ts = Date.now() - 1_000;
    const m = Math.floor(ts / MINUTE_MS);
    // The previous release counted u1, u2 (ad-x) in minute m: its head names the unkeyed block d<m>
    // and the open minute m, whose provisional count lives in the count hash.
    const records = Buffer.alloc(16);
    ['u1', 'u2'].forEach((id, i) => {
      records.writeUInt32LE(fnv1a32Utf16(id), 8 * i);
      records.writeUInt32LE(murmur3_32(id), 8 * i + 4);
    });
    await redis.set(keys.part(0, `d${m}`), records);
    await redis.sadd(keys.parts(0), keys.part(0, `d${m}`));
    await redis.hset(keys.counts(0, m, null, null), 'ad-x', '2');
    // [3, shard, lastSeq, maxEventTs, watermark, closedThrough, expiredBeforeMinute, bucketMinutes, open, blocks, hot]
    await redis.set(keys.snapshot(0), Buffer.from(encode([3, 0, 0, ts, ts - 5_000, m - 1, -1, 1, [m], [m], null])));
    await redis.hset(keys.meta(0), 'seq', '0', 'watermark', String(ts - 5_000), 'closedThrough', String(m - 1), 'epoch', '0');

    // A short horizon (45 s) so that it passes within the test.
    stack = await startStack({ prefix, shards: 1, correctionHorizonMs: 45_000, maxFutureMs: 0 }, servers);
    const url = stack.url;
    const count = async (ad: string): Promise<number> =>
      (await getJson(`${url}/v1/ads/${ad}/aggregated_count?from=${m * MINUTE_MS}&to=${(m + 1) * MINUTE_MS}`)).body.count as number;
    expect(await count('ad-x')).toBe(2);
    const post = await postClicks(url, [
      JSON.stringify({ click_id: 'u1', ad_id: 'ad-x', ts }), // counted by the previous release: a duplicate
      JSON.stringify({ click_id: 'u2', ad_id: 'ad-x', ts }), // likewise
      JSON.stringify({ click_id: 'u3', ad_id: 'ad-x', ts }), // new
      JSON.stringify({ click_id: 'u3', ad_id: 'ad-x', ts }), // new, then a duplicate in the same POST
      JSON.stringify({ click_id: 'u4', ad_id: 'ad-y', ts }),
    ]);
    expect(post.status).toBe(200);
    await waitFor('the new clicks counted', async () => (await count('ad-y')) === 1, { timeoutMs: 30_000, everyMs: 100 });
    expect(await count('ad-x')).toBe(3);
    await waitFor('a format-4 head with the legacy block', async () => {
      const head = await redis.getBuffer(keys.snapshot(0));
      const doc = head === null ? [] : (decode(head) as unknown[]);
      return doc[0] === 4 && JSON.stringify(doc[12]) === JSON.stringify([m]);
    }, { timeoutMs: 30_000, everyMs: 100 });
    // The secret the keyed blocks depend on sits next to the state.
    expect((await redis.getBuffer(keys.dedupSecret()))?.byteLength).toBe(16);

    // A restart: both blocks are restored, every id seen so far is still a duplicate.
    await stack.close();
    stack = await startStack({ prefix, shards: 1, correctionHorizonMs: 45_000, maxFutureMs: 0 }, servers);
    const url2 = stack.url;
    const again = await postClicks(url2, ['u1', 'u3', 'u4', 'u5'].map((id) => JSON.stringify({ click_id: id, ad_id: id === 'u4' ? 'ad-y' : 'ad-x', ts })));
    expect(again.body).toMatchObject({ accepted: 4, rejected: [] });
    const count2 = async (ad: string): Promise<number> =>
      (await getJson(`${url2}/v1/ads/${ad}/aggregated_count?from=${m * MINUTE_MS}&to=${(m + 1) * MINUTE_MS}`)).body.count as number;
    await waitFor('u5 counted after the restart', async () => (await count2('ad-x')) === 4, { timeoutMs: 30_000, everyMs: 100 });
    expect(await count2('ad-y')).toBe(1);

    // The horizon passes (the idle shard's watermark follows the wall clock): the legacy block is
    // deleted and the head no longer names it.
    await waitFor('the legacy block dropped', async () => (await redis.exists(keys.part(0, `d${m}`))) === 0, { timeoutMs: 240_000, everyMs: 500 });
    const head = decode((await redis.getBuffer(keys.snapshot(0)))!) as unknown[];
    expect(head[12]).toEqual([]);
    expect(await redis.smembers(keys.parts(0))).not.toContain(keys.part(0, `d${m}`));
    expect(await count2('ad-x')).toBe(4);
  }, 420_000);
});
