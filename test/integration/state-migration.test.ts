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
 * A shard whose state an earlier release wrote (one whole-state MessagePack snapshot, format 1) is
 * migrated in place by the current one: its open counts and dedupe ids carry on exactly, its first
 * commit replaces the blob with a format-3 head and parts, and a restart after that restores from
 * the new format.
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

    // The first commit after the restore replaced the blob by a format-3 head and wrote the parts.
    await waitFor('a format-3 head committed', async () => {
      const head = await redis.getBuffer(keys.snapshot(0));
      return head !== null && (decode(head) as unknown[])[0] === 3;
    }, { timeoutMs: 30_000, everyMs: 100 });
    // c1, c2 (migrated), c3, c4: 8 bytes each in the minute's dedupe block, listed in the parts set.
    await waitFor('every id in the dedupe block', async () => (await redis.strlen(keys.part(0, `d${m}`))) === 4 * 8, { timeoutMs: 30_000, everyMs: 100 });
    expect(await redis.smembers(keys.parts(0))).toContain(keys.part(0, `d${m}`));

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
  });
});
