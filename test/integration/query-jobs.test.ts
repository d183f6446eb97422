import { ErrorCode } from '../../src/errors.ts';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardActors } from '../../src/actors/index.ts';
import { adaggHttp } from '../../src/gateway/http-plugin.ts';
import { QueryJobs, type QueryJobsOptions } from '../../src/gateway/query-jobs.ts';
import { queryJobRoutes } from '../../src/gateway/routes/query-jobs.ts';
import { shardOf } from '../../src/model/partition.ts';
import { connectNats } from '../../src/runtime/nats.ts';
import { scanRawClicks, type RawBatch } from '../../src/runtime/raw-scan.ts';
import { topology, type Topology } from '../../src/runtime/topology.ts';
import { realisticStream, type GenClick } from '../helpers/click-stream.ts';
import { settledQueryJob } from '../helpers/settle.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitAllClosed } from '../helpers/verify.ts';
import { pace } from '../helpers/wait.ts';

/**
 * Query jobs answer filters the actors do not pre-aggregate (user_id, ip, country+user_id) by a scan
 * of the raw stream: their results equal an independent recount of the posted clicks (each click_id
 * once), and equal the synchronous endpoint for a pre-aggregated filter.
 */

const MIN = 60_000;
const HOT_USER = 'u-hot';
const HOT_IP = '10.9.9.9';

/** The gateway's body handling and error mapping (src/gateway/server.ts), with only the job routes. */
function jobApp(jobs: QueryJobs): FastifyInstance {
  const app = Fastify();
  void app.register(adaggHttp);
  queryJobRoutes(app, jobs);
  return app;
}

/** Deterministic re-labelling so filters select a meaningful share: ~10% hot user, ~8% hot ip. */
function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

interface Filter {
  [k: string]: string;
}

/** Distinct clicks (first copy of each click_id) in [from, to) matching the filter. */
function truthClicks(clicks: readonly GenClick[], fromMin: number, toMin: number, filter: Filter): GenClick[] {
  const seen = new Set<string>();
  const out: GenClick[] = [];
  for (const c of clicks) {
    if (seen.has(c.click_id)) continue;
    seen.add(c.click_id);
    if (c.ts < fromMin * MIN || c.ts >= toMin * MIN) continue;
    if (Object.entries(filter).every(([k, v]) => (c as unknown as Record<string, string>)[k] === v)) out.push(c);
  }
  return out;
}

function truthAdCount(clicks: readonly GenClick[], ad: string, fromMin: number, toMin: number, filter: Filter): unknown {
  const per = new Map<number, number>();
  for (const c of truthClicks(clicks, fromMin, toMin, { ...filter, ad_id: ad })) {
    const m = Math.floor(c.ts / MIN);
    per.set(m, (per.get(m) ?? 0) + 1);
  }
  const minutes = [];
  let count = 0;
  for (let m = fromMin; m < toMin; m++) {
    count += per.get(m) ?? 0;
    minutes.push({ minute: new Date(m * MIN).toISOString(), count: per.get(m) ?? 0, final: true });
  }
  return { ad_id: ad, from: new Date(fromMin * MIN).toISOString(), to: new Date(toMin * MIN).toISOString(), count, minutes };
}

function truthTop(clicks: readonly GenClick[], n: number, fromMin: number, toMin: number, filter: Filter): unknown {
  const per = new Map<string, number>();
  for (const c of truthClicks(clicks, fromMin, toMin, filter)) per.set(c.ad_id, (per.get(c.ad_id) ?? 0) + 1);
  const ads = [...per].map(([ad_id, count]) => ({ ad_id, count }));
  ads.sort((a, b) => b.count - a.count || (a.ad_id < b.ad_id ? -1 : 1));
  return { from: new Date(fromMin * MIN).toISOString(), to: new Date(toMin * MIN).toISOString(), ads: ads.slice(0, n) };
}

async function post(url: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/v1/queries`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

/** Polls a job until it is done or failed; records every progress fraction seen. */
function settle(url: string, id: string, fractions: number[] = []): Promise<any> {
  return settledQueryJob(url, id, { everyMs: 50, onPoll: (job) => fractions.push(job.progress.fraction) });
}

describe('query jobs over the raw stream', () => {
  let stack: TestStack;
  let nc: NatsConnection;
  let topo: Topology;
  let jobs: QueryJobs;
  let app: FastifyInstance;
  let url: string;
  /** Stream time between the two halves of the posted stream. */
  let midMs = 0;
  const now = Date.now();
  // Few ads (so filters select enough of each), a longer span, more duplicates, no malformed lines.
  const stream = realisticStream({ seed: 11, events: 8000, now, ads: 60, startAgoMs: 9 * MIN, maxLateMs: 3 * MIN, dupFraction: 0.03, malformedFraction: 0 });
  for (const c of new Set(stream.clicks)) {
    const h = hash(c.click_id);
    if (h % 10 === 0) c.user_id = HOT_USER;
    if ((h >>> 8) % 12 === 0) c.ip = HOT_IP;
  }
  const clicks = stream.clicks;
  const lines = clicks.map((c) => JSON.stringify(c));
  const minutes = clicks.map((c) => Math.floor(c.ts / MIN));
  const firstMin = Math.min(...minutes);
  const endMin = Math.max(...minutes) + 1;

  beforeAll(async () => {
    // No archivers: their consumers would sit beside the shard actors' feeds that the scan test counts.
    stack = await startStack({ shards: 4, archive: 'off' });
    nc = await connectNats(stack.opts.natsUrl, 'query-jobs-test');
    topo = topology(stack.opts.prefix);
    const opts: QueryJobsOptions = { ...stack.opts };
    jobs = new QueryJobs(nc, topo, opts, { actors: shardActors });
    app = jobApp(jobs);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const addr = app.server.address();
    url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    const half = Math.floor(lines.length / 2);
    const send = async (part: string[]): Promise<void> => {
      for (let i = 0; i < part.length; i += 500) {
        const res = await postClicks(stack.url, part.slice(i, i + 500));
        expect(res.status).toBe(200);
        expect(res.body.accepted).toBe(part.slice(i, i + 500).length);
      }
    };
    await send(lines.slice(0, half));
    // Guard bands in wall-clock time, not a wait for an event: the halves' stored timestamps fall
    // clearly either side of midMs (every post above was acknowledged, so its messages are stored).
    await pace(50);
    midMs = Date.now();
    await pace(50);
    await send(lines.slice(half));
  });
  afterAll(async () => {
    await jobs?.close();
    await app?.close();
    await nc?.drain();
    await stack?.close();
  });

  describe('scanRawClicks', () => {
    const all: RawBatch[] = [];
    let totalInStream = 0;

    it('reads every message of the window once, in order, and stops caught up', async () => {
      totalInStream = (await (await jetstreamManager(nc)).streams.info(topo.clicksStream)).state.messages;
      const res = await scanRawClicks(nc, topo, { startMs: now - 3600_000, endMs: Date.now() + 3600_000, maxMessages: 1e6, fetchSize: 64 }, (b) => {
        all.push(b);
      });
      expect(res.stopped).toBe('caught_up');
      expect(res.scannedMessages).toBe(totalInStream);
      expect(res.totalMessages).toBe(totalInStream);
      expect(res.scannedClicks).toBe(clicks.length);
      expect(all.map((b) => b.seq)).toEqual([...all.map((b) => b.seq)].sort((a, b) => a - b));
      for (const b of all) for (const c of b.clicks) expect(shardOf(c.ad_id, 4)).toBe(b.shard);
    });

    it('bounds by stream time: [start, mid] and [mid, end] split the messages', async () => {
      const before = all.filter((b) => b.storedMs <= midMs).length;
      expect(before).toBeGreaterThan(0);
      expect(before).toBeLessThan(all.length);
      const head = await scanRawClicks(nc, topo, { startMs: now - 3600_000, endMs: midMs, maxMessages: 1e6 }, () => undefined);
      expect(head).toMatchObject({ stopped: 'end_time', scannedMessages: before, totalMessages: before });
      const tail = await scanRawClicks(nc, topo, { startMs: midMs, endMs: Date.now() + 3600_000, maxMessages: 1e6 }, () => undefined);
      expect(tail).toMatchObject({ stopped: 'caught_up', scannedMessages: all.length - before });
      const future = await scanRawClicks(nc, topo, { startMs: Date.now() + 60_000, endMs: Date.now() + 120_000, maxMessages: 1e6 }, () => undefined);
      expect(future).toMatchObject({ stopped: 'empty', scannedMessages: 0 });
    });

    it('reads one shard subject only, and the shards add up', async () => {
      let sum = 0;
      for (let shard = 0; shard < 4; shard++) {
        const res = await scanRawClicks(nc, topo, { shard, startMs: 0, endMs: Date.now() + 60_000, maxMessages: 1e6 }, (b) => {
          expect(b.shard).toBe(shard);
          for (const c of b.clicks) expect(shardOf(c.ad_id, 4)).toBe(shard);
        });
        expect(res.scannedMessages).toBe(all.filter((b) => b.shard === shard).length);
        sum += res.scannedMessages;
      }
      expect(sum).toBe(all.length);
    });

    it('refuses a window above maxMessages without reading, and stops on abort', async () => {
      const limited = await scanRawClicks(nc, topo, { startMs: 0, endMs: Date.now() + 60_000, maxMessages: 3 }, () => undefined);
      expect(limited).toMatchObject({ stopped: 'limit', scannedMessages: 0, totalMessages: all.length });
      const ac = new AbortController();
      const reason = new Error('stop here');
      let seen = 0;
      await expect(
        scanRawClicks(nc, topo, { startMs: 0, endMs: Date.now() + 60_000, maxMessages: 1e6, signal: ac.signal, fetchSize: 8 }, () => {
          if (++seen === 3) ac.abort(reason);
        }),
      ).rejects.toBe(reason);
      expect(seen).toBe(3);
    });

    it('leaves no consumer behind (only the shard actors\' feeds remain)', async () => {
      const jsm = await jetstreamManager(nc);
      const names = (await jsm.consumers.list(topo.clicksStream).next()).map((c) => c.name);
      expect(names).toHaveLength(4);
    });
  });

  describe('POST /v1/queries', () => {
    const cases: Array<{ name: string; body: Record<string, unknown>; expected: () => unknown }> = [];
    const ad = 'ad-0';
    const otherAd = 'ad-3';
    const f = (filter: Filter): Filter => filter;
    for (const [label, filter] of [
      ['user_id', f({ user_id: HOT_USER })],
      ['ip', f({ ip: HOT_IP })],
      ['country+user_id', f({ country: 'US', user_id: HOT_USER })],
    ] as const) {
      cases.push({
        name: `aggregated_count ${ad} by ${label}`,
        body: { kind: 'aggregated_count', ad_id: ad, from: firstMin * MIN, to: new Date(endMin * MIN).toISOString(), filter },
        expected: () => truthAdCount(clicks, ad, firstMin, endMin, filter),
      });
      cases.push({
        name: `popular_ads by ${label}`,
        body: { kind: 'popular_ads', count: 10, from: new Date(firstMin * MIN).toISOString(), to: endMin * MIN, filter },
        expected: () => truthTop(clicks, 10, firstMin, endMin, filter),
      });
    }
    // A sub-range (clicks outside [from, to) are skipped, late ones included) and popular_ads on one ad.
    cases.push({
      name: `aggregated_count ${otherAd} by user_id over a sub-range`,
      body: { kind: 'aggregated_count', ad_id: otherAd, from: (firstMin + 2) * MIN + 30_000, to: (endMin - 2) * MIN, filter: { user_id: HOT_USER } },
      expected: () => truthAdCount(clicks, otherAd, firstMin + 2, endMin - 2, { user_id: HOT_USER }),
    });
    cases.push({
      name: 'popular_ads restricted to one ad by filter.ad_id and ip',
      body: { kind: 'popular_ads', count: 3, from: firstMin * MIN, to: endMin * MIN, filter: { ad_id: ad, ip: HOT_IP } },
      expected: () => truthTop(clicks, 3, firstMin, endMin, { ad_id: ad, ip: HOT_IP }),
    });

    it('answers user_id, ip and country+user_id filters for one ad and for popular_ads exactly', async () => {
      // All submitted at once: two run, the others wait queued.
      const submitted = await Promise.all(cases.map((c) => post(url, c.body)));
      for (const s of submitted) {
        expect(s.status).toBe(202);
        expect(s.body).toEqual({ id: expect.stringMatching(/^q_[A-Za-z0-9_-]+$/), status: 'queued', links: { self: `/v1/queries/${s.body.id}` } });
      }
      const fractions: number[] = [];
      const done = await Promise.all(submitted.map((s) => settle(url, s.body.id, fractions)));
      done.forEach((job, i) => {
        const c = cases[i]!;
        expect(job.status, c.name).toBe('done');
        expect(job.error).toBeNull();
        expect(job.result, c.name).toEqual(c.expected());
        expect(job.progress.fraction).toBe(1);
        expect(job.progress.scanned_messages).toBe(job.progress.total_messages);
        expect(job.progress.scanned_messages).toBeGreaterThan(0);
        expect(job.progress.matched_clicks).toBeGreaterThan(0);
        expect(Date.parse(job.finished_at)).toBeGreaterThanOrEqual(Date.parse(job.created_at));
      });
      expect(fractions.every((x) => x >= 0 && x <= 1)).toBe(true);
      // Every hot-user count is non-trivial, so the comparison means something.
      expect((done[0].result as { count: number }).count).toBeGreaterThan(20);
      expect((done[1].result as { ads: unknown[] }).ads).toHaveLength(10);
      // A job naming an ad reads only that ad's shard.
      expect(done[0].progress.scanned_messages).toBeLessThan(done[1].progress.scanned_messages);
    });

    it('equals the synchronous endpoint for a pre-aggregated filter (country)', async () => {
      await waitAllClosed(stack.url, endMin - 1);
      const rest = await getJson(`${stack.url}/v1/ads/${ad}/aggregated_count?from=${firstMin * MIN}&to=${endMin * MIN}&country=US`);
      expect(rest.status).toBe(200);
      const job = await post(url, { kind: 'aggregated_count', ad_id: ad, from: firstMin * MIN, to: endMin * MIN, filter: { country: 'us' } });
      const done = await settle(url, job.body.id);
      // A job scans the raw stream: it applies no invalid-click rules (no invalid fields) and knows
      // no actor's minute states (no `state`, no `sealed_through`).
      const { watermark: _w, invalid: _i, invalid_by_rule: _r, sealed_through: _s, minutes, ...sync } = rest.body as Record<string, unknown>;
      const bare = (minutes as Array<Record<string, unknown>>).map(({ invalid: _a, invalid_by_rule: _b, state: _st, ...m }) => m);
      expect(done.result).toEqual({ ...sync, minutes: bare });
      expect(done.result.count).toBeGreaterThan(0);
    });

    it('a range whose stream window ends before the clicks were stored reads nothing', async () => {
      const job = await post(url, { kind: 'popular_ads', from: now - 3 * 3600_000, to: now - 2.5 * 3600_000, filter: { user_id: HOT_USER } });
      const done = await settle(url, job.body.id);
      expect(done).toMatchObject({ status: 'done', result: { ads: [] }, progress: { scanned_messages: 0, fraction: 1 } });
    });

    it('404 for an unknown id', async () => {
      const r = await getJson(`${url}/v1/queries/q_doesnotexist`);
      expect(r.status).toBe(404);
      expect(r.body.code).toBe('ADAGG_E_NOT_FOUND');
    });

    it('400 for bad bodies and fields, 400 range too large', async () => {
      const from = firstMin * MIN;
      const bad = [
        '{"kind":',
        '',
        '[1]',
        { kind: 'sum', from, to: from + MIN },
        { kind: 'aggregated_count', from, to: from + MIN },
        { kind: 'aggregated_count', ad_id: 'ad-0', from: 'yesterday', to: from + MIN },
        { kind: 'aggregated_count', ad_id: 'ad-0', from, to: from },
        { kind: 'aggregated_count', ad_id: 'ad-0', from, to: from + MIN, filter: { user_id: 7 } },
        { kind: 'popular_ads', count: 0, from, to: from + MIN },
        { kind: 'popular_ads', from, to: from + MIN, window: 5 },
      ];
      for (const b of bad) {
        const r = await post(url, b);
        expect(r.status, JSON.stringify(b)).toBe(400);
        expect(r.body.code, JSON.stringify(b)).toBe('ADAGG_E_BAD_PARAM');
        expect(typeof r.body.error).toBe('string');
      }
      const big = await post(url, { kind: 'popular_ads', from, to: from + 1441 * MIN, filter: { user_id: HOT_USER } });
      expect(big.status).toBe(400);
      expect(big.body.code).toBe('ADAGG_E_RANGE_TOO_LARGE');
    });

    it('fails with ADAGG_E_SCAN_LIMIT above maxScanMessages', async () => {
      const limitedJobs = new QueryJobs(nc, topo, { ...stack.opts, maxScanMessages: 5 }, { actors: shardActors });
      const limitedApp = jobApp(limitedJobs);
      await limitedApp.listen({ port: 0, host: '127.0.0.1' });
      try {
        const addr = limitedApp.server.address();
        const lurl = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
        const job = await post(lurl, { kind: 'popular_ads', from: firstMin * MIN, to: endMin * MIN, filter: { user_id: HOT_USER } });
        expect(job.status).toBe(202);
        const done = await settle(lurl, job.body.id);
        expect(done.status).toBe('failed');
        expect(done.error.code).toBe(ErrorCode.ScanLimit);
        expect(done.result).toBeNull();
        expect(done.progress.total_messages).toBeGreaterThan(5);
        expect(done.progress.fraction).toBeLessThan(1);
      } finally {
        await limitedJobs.close();
        await limitedApp.close();
      }
    });
  });
});
