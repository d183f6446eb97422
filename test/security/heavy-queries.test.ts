import Fastify, { type FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.ts';
import { adaggHttp } from '../../src/gateway/http-plugin.ts';
import { setPrincipal } from '../../src/gateway/principal.ts';
import { RankingCache } from '../../src/gateway/ranking-cache.ts';
import { SlidingTotals } from '../../src/gateway/sliding-totals.ts';
import fc from 'fast-check';
import { countRoutes } from '../../src/gateway/routes/counts.ts';
import { shardOf } from '../../src/model/partition.ts';
import { QueryService } from '../../src/gateway/query-service.ts';
import { connectNats } from '../../src/runtime/nats.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { topology } from '../../src/runtime/topology.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitForValue } from '../helpers/wait.ts';

/**
 * Issue 11, defect 5 (heavy queries): `popular_ads?window=10080` cost 0.65 s of CPU each and 20 in
 * parallel pushed ingest latency to 11 s. Heavy windows are rate-limited per token, and concurrent
 * identical heavy rankings share one computation, kept until the next minute closes.
 */

const MIN = 60_000;

async function countsApp(rate: number): Promise<FastifyInstance> {
  const app = Fastify();
  await app.register(adaggHttp);
  // Stand-in for authentication: `x-test-token` names the caller.
  app.addHook('onRequest', async (req) => {
    const name = req.headers['x-test-token'];
    if (typeof name === 'string') setPrincipal(req, { name, scopes: new Set(['read']) });
  });
  const queries = {
    popular: async () => ({ from: '', to: '', ads: [] }),
    adCount: async () => ({ ad_id: 'a', from: '', to: '', count: 0, minutes: [], watermark: null }),
  } as unknown as QueryService;
  countRoutes(app, queries, {
    dimensions: ['country'],
    cubes: [],
    maxQueryMinutes: 10_080,
    maxTopN: 100,
    heavyQueryMinutes: 60,
    heavyQueryRate: rate,
    heavyQueryIntervalMs: 60_000,
  });
  await app.ready();
  return app;
}

describe('heavy query rate limit (per token)', () => {
  it('the 4th heavy ranking in a minute gets 429 ADAGG_E_RATE_LIMITED with Retry-After; light ones and other tokens are not held back', async () => {
    const app = await countsApp(3);
    const get = (token: string, window: number) =>
      app.inject({ method: 'GET', url: `/v1/ads/popular_ads?window=${window}&count=5`, headers: { 'x-test-token': token } });
    for (let i = 0; i < 3; i++) expect((await get('alice', 10_080)).statusCode).toBe(200);
    const over = await get('alice', 10_080);
    expect(over.statusCode).toBe(429);
    expect(over.json()).toEqual({ code: ErrorCode.RateLimited, error: expect.stringContaining('heavy queries') });
    expect(Number(over.headers['retry-after'])).toBeGreaterThan(0);
    expect(Number(over.headers['retry-after'])).toBeLessThanOrEqual(60);
    expect((await get('alice', 60)).statusCode).toBe(429); // 60 minutes is heavy too
    for (let i = 0; i < 10; i++) expect((await get('alice', 59)).statusCode).toBe(200);
    expect((await get('bob', 10_080)).statusCode).toBe(200);
    // Without a token (authentication off), callers are told apart by address.
    expect((await app.inject({ method: 'GET', url: '/v1/ads/popular_ads?window=10080' })).statusCode).toBe(200);
    // A malformed window is still the parameter error it always was.
    const bad = await get('alice', Number.NaN);
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe(ErrorCode.BadParam);
    await app.close();
  });
});

describe('RankingCache', () => {
  it('shares one computation among concurrent identical requests and keeps it until the epoch changes or it ages', async () => {
    let now = 0;
    const cache = new RankingCache({ maxEntries: 2, maxAgeMs: 1000, now: () => now });
    let computed = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const compute = async () => {
      computed++;
      await gate;
      return [{ ad_id: `a${computed}`, count: computed }];
    };
    const all = Array.from({ length: 20 }, () => cache.get('k', 7, compute));
    release();
    const answers = await Promise.all(all);
    expect(computed).toBe(1);
    expect(new Set(answers.map((a) => a[0]!.ad_id))).toEqual(new Set(['a1']));
    expect((await cache.get('k', 7, compute))[0]!.ad_id).toBe('a1'); // kept
    expect((await cache.get('k', 8, compute))[0]!.ad_id).toBe('a2'); // a minute closed
    now += 1000;
    expect((await cache.get('k', 8, compute))[0]!.ad_id).toBe('a3'); // too old
    await cache.get('x', 8, compute);
    await cache.get('y', 8, compute); // evicts k (least recently used)
    expect((await cache.get('k', 8, compute))[0]!.ad_id).toBe('a6');
    // A failed computation is not kept.
    await expect(cache.get('f', 8, () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect((await cache.get('f', 8, compute))[0]!.ad_id).toBe('a7');
  });
});

describe('SlidingTotals', () => {
  it('a slid range equals the range read whole, whatever the order of requests', async () => {
    // Minute m holds ad-(m % 7) × (m % 5 + 1) and ad-x × 1.
    const read = async (f: number, t: number): Promise<Map<string, number>> => {
      const out = new Map<string, number>();
      for (let m = f; m < t; m++) {
        out.set(`ad-${m % 7}`, (out.get(`ad-${m % 7}`) ?? 0) + (m % 5) + 1);
        out.set('ad-x', (out.get('ad-x') ?? 0) + 1);
      }
      return out;
    };
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 1, max: 300 })), { minLength: 1, maxLength: 12 }), async (ranges) => {
        const bases = new SlidingTotals({ maxEntries: 4, maxAds: 100 });
        const answers = await Promise.all(ranges.map(([f, len]) => bases.totals('k', f, f + len, read)));
        for (const [i, [f, len]] of ranges.entries()) expect(new Map(answers[i]!)).toEqual(await read(f, f + len));
      }),
      { numRuns: 200 },
    );
  });

  it('reads a few minutes, not the whole window, once a base is kept', async () => {
    let read = 0;
    const bases = new SlidingTotals({ maxEntries: 4, maxAds: 100 });
    const r = async (f: number, t: number) => ((read += t - f), new Map([['a', t - f]]));
    await bases.totals('k', 0, 10_000, r);
    expect(read).toBe(10_000);
    for (let k = 1; k <= 20; k++) expect((await bases.totals('k', k, 10_000 + k, r)).get('a')).toBe(10_000);
    expect(read).toBe(10_000 + 20 * 2);
  });
});

describe('20 parallel popular_ads?window=10080 (measured)', () => {
  let stack: TestStack;
  let redis: Redis;
  const ADS = 20;
  /** Minutes [fromMin, toMin) hold the written counts. */
  let fromMin = 0;
  let toMin = 0;

  /** The exact top 10 of [to − 10080, to) from the written counts (the seed clicks are far below them). */
  function truth(to: number): Array<{ ad_id: string; count: number }> {
    const totals = new Map<string, number>();
    for (let m = Math.max(fromMin, to - 10_080); m < Math.min(toMin, to); m++) {
      for (let shard = 0; shard < 4; shard++) {
        for (let a = 0; a < ADS; a++) totals.set(`ad-${shard}-${a}`, (totals.get(`ad-${shard}-${a}`) ?? 0) + 1 + ((m + a) % 50));
      }
    }
    const ads = [...totals].map(([ad_id, count]) => ({ ad_id, count }));
    ads.sort((x, y) => y.count - x.count || (x.ad_id < y.ad_id ? -1 : 1));
    return ads.slice(0, 10);
  }

  beforeAll(async () => {
    // A rate high enough not to interfere: this measures the cost of the rankings themselves.
    stack = await startStack({ shards: 4, heavyQueryRate: 100_000 });
    redis = new Redis(stack.opts.redisUrl);
    const keys = new RedisKeys(stack.opts.prefix);
    // A click in every shard, a few minutes back, so that every shard commits and closes minutes.
    const ts = Date.now() - 3 * MIN;
    const ads = Array.from({ length: 40 }, (_, i) => `seed-${i}`);
    const perShard = new Map<number, string>();
    for (const ad of ads) if (!perShard.has(shardOf(ad, 4))) perShard.set(shardOf(ad, 4), ad);
    expect(perShard.size).toBe(4);
    const lines = [...perShard.values()].map((ad, i) => JSON.stringify({ click_id: `seed${i}`, ad_id: ad, ts }));
    expect((await postClicks(stack.url, lines)).status).toBe(200);
    const closedEnd = await waitForValue(
      'every shard closed the seed minute',
      async () => {
        const metas = await Promise.all([0, 1, 2, 3].map((s) => redis.hget(keys.meta(s), 'closedThrough')));
        return metas.every((m) => m !== null) ? Math.min(...metas.map(Number)) + 1 : -1;
      },
      (end) => end > Math.floor(ts / MIN),
      { timeoutMs: 60_000, everyMs: 200 },
    );
    // Seven days of closed minutes in Redis: ADS ads per shard and minute.
    fromMin = closedEnd - 10_080 - 30;
    toMin = closedEnd - 5;
    for (let shard = 0; shard < 4; shard++) {
      let p = redis.pipeline();
      for (let m = fromMin; m < toMin; m++) {
        const h: Record<string, string> = {};
        for (let a = 0; a < ADS; a++) h[`ad-${shard}-${a}`] = String(1 + ((m + a) % 50));
        p.hset(keys.counts(shard, m, null, null), h);
        if (p.length >= 2000) {
          await p.exec();
          p = redis.pipeline();
        }
      }
      await p.exec();
    }
  }, 180_000);
  afterAll(async () => {
    redis?.disconnect();
    await stack?.close();
  });

  /** Runs `calls` in parallel, with ingest POSTs meanwhile: CPU of this process, wall time, slowest ingest. */
  async function burst(calls: Array<() => Promise<{ status: number; body: unknown }>>): Promise<Burst> {
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let done = false;
    const all = Promise.all(calls.map((c) => c())).finally(() => (done = true));
    // Ingest meanwhile: one click at a time until the rankings are answered; the slowest POST counts.
    let ingestMs = 0;
    do {
      const i0 = performance.now();
      const ingest = await postClicks(stack.url, [JSON.stringify({ click_id: `probe-${Math.random()}`, ad_id: 'probe', ts: Date.now() })]);
      ingestMs = Math.max(ingestMs, performance.now() - i0);
      expect(ingest.status).toBe(200);
    } while (!done);
    const replies = await all;
    const wallMs = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    const failed = replies.filter((r) => r.status !== 200).map((r) => `${r.status} ${JSON.stringify(r.body)}`);
    return { cpuMs: (cpu.user + cpu.system) / 1000, wallMs, ingestMs, bodies: replies.map((r) => r.body), failed };
  }

  interface Burst {
    cpuMs: number;
    wallMs: number;
    ingestMs: number;
    bodies: unknown[];
    failed: string[];
  }

  const fmt = (b: Burst): string => `cpu ${b.cpuMs.toFixed(0)} ms, wall ${b.wallMs.toFixed(0)} ms, ingest ${b.ingestMs.toFixed(0)} ms, failed ${b.failed.length}`;
  const http = (url: string) => () => getJson(url);

  it('20 parallel 7-day rankings cost a fraction of what they did, and stay exact', async () => {
    const first = await getJson(`${stack.url}/v1/ads/popular_ads?window=10080&count=10`);
    expect(first.status).toBe(200);
    const end = Date.parse(first.body.to as string) / MIN;
    const at = (k: number): string => `${stack.url}/v1/ads/popular_ads?window=10080&count=10&at=${(end - k) * MIN}`;

    // Before: every ranking read all 10,080 minutes of every shard (no base kept, nothing shared).
    const nc = await connectNats(stack.opts.natsUrl, 'heavy-baseline');
    const plain = new Redis(stack.opts.redisUrl);
    const baseline = new QueryService(nc, plain, topology(stack.opts.prefix), new RedisKeys(stack.opts.prefix), { ...stack.opts, rankingCacheEntries: 0 });
    const before = await burst(
      Array.from({ length: 20 }, (_, k) => async () => ({ status: 200, body: await baseline.popular(10, 10_080, end - 40 - k) })),
    );
    plain.disconnect();
    await nc.drain();

    // After, through the gateway: different windows (each slides from the kept base) ...
    const distinct = await burst(Array.from({ length: 20 }, (_, k) => http(at(k + 1))));
    // ... and the same ranking twenty times at once (one computation), then again (cached).
    const same = await burst(Array.from({ length: 20 }, () => http(at(30))));
    const again = await burst(Array.from({ length: 20 }, () => http(at(30))));
    console.log(
      `[heavy-queries] 20 parallel popular_ads window=10080 (4 shards x ${ADS} ads x 10080 minutes): ` +
        `before: ${fmt(before)}; after, distinct windows: ${fmt(distinct)}; after, identical: ${fmt(same)}; after, identical again: ${fmt(again)}`,
    );
    for (const b of [before, distinct, same, again]) expect(b.failed).toEqual([]);
    // Exact: equal to the ranking computed from the written counts, before and after.
    expect((before.bodies[0] as { ads: unknown[] }).ads).toEqual(truth(end - 40));
    distinct.bodies.forEach((b, k) => expect((b as { ads: unknown[] }).ads).toEqual(truth(end - k - 1)));
    for (const b of [...same.bodies, ...again.bodies]) expect((b as { ads: unknown[] }).ads).toEqual(truth(end - 30));
    expect(distinct.cpuMs).toBeLessThan(before.cpuMs / 3);
    expect(same.cpuMs).toBeLessThan(before.cpuMs / 3);
    expect(again.cpuMs).toBeLessThan(before.cpuMs / 3);
  }, 300_000);
});
