import { ErrorCode } from '../../src/errors.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import Fastify from 'fastify';
import { describe, expect, it } from 'vitest';
import { adaggHttp } from '../../src/gateway/http-plugin.ts';
import { queryJobRoutes } from '../../src/gateway/routes/query-jobs.ts';
import { shardActors } from '../../src/actors/index.ts';
import { AdaggError } from '../../src/errors.ts';
import {
  clickMatcher,
  parseQueryJobRequest,
  QueryJobs,
  type QueryJobsOptions,
  type QueryJobView,
} from '../../src/gateway/query-jobs.ts';
import type { Click } from '../../src/model/click.ts';
import { shardOf } from '../../src/model/partition.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { RawBatch, RawScanRequest, RawScanResult, scanRawClicks } from '../../src/runtime/raw-scan.ts';
import { topology } from '../../src/runtime/topology.ts';
import { waitFor, waitForValue } from '../helpers/wait.ts';

const T0 = Date.UTC(2025, 0, 1, 12, 0, 0);
const MIN = 60_000;
const limits = { maxRangeMinutes: 1440, maxTopN: 100 };

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof AdaggError ? err.code : 'not-adagg';
  }
  return undefined;
}

describe('parseQueryJobRequest', () => {
  it('accepts ISO and epoch ms, floors to minutes, upper-cases country', () => {
    const spec = parseQueryJobRequest(
      { kind: 'aggregated_count', ad_id: 'ad-1', from: new Date(T0 + 30_000).toISOString(), to: T0 + 5 * MIN + 59_999, filter: { user_id: 'u1', country: 'us' } },
      limits,
    );
    expect(spec).toEqual({ kind: 'aggregated_count', adId: 'ad-1', fromMinute: T0 / MIN, toMinute: T0 / MIN + 5, filter: { user_id: 'u1', country: 'US' } });
    const top = parseQueryJobRequest({ kind: 'popular_ads', from: String(T0), to: T0 + MIN, filter: { ad_id: 'ad-2' } }, limits);
    expect(top).toEqual({ kind: 'popular_ads', count: 10, fromMinute: T0 / MIN, toMinute: T0 / MIN + 1, filter: { ad_id: 'ad-2' } });
  });

  it('refuses bad fields with ADAGG_E_BAD_PARAM and long ranges with ADAGG_E_RANGE_TOO_LARGE', () => {
    const ok = { kind: 'aggregated_count', ad_id: 'ad-1', from: T0, to: T0 + MIN };
    const bad = (patch: Record<string, unknown>): string | undefined => codeOf(() => parseQueryJobRequest({ ...ok, ...patch }, limits));
    expect(codeOf(() => parseQueryJobRequest('nope', limits))).toBe('ADAGG_E_BAD_PARAM');
    expect(codeOf(() => parseQueryJobRequest([ok], limits))).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ kind: 'count' })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ ad_id: undefined })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ ad_id: 'bad id!' })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ from: 'yesterday' })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ from: -5 })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ to: undefined })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ to: T0 + 59_000 })).toBe('ADAGG_E_BAD_PARAM'); // same minute as from
    expect(bad({ count: 5 })).toBe('ADAGG_E_BAD_PARAM'); // not a field of aggregated_count
    expect(bad({ extra: 1 })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ filter: 'user_id=u1' })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ filter: { user_id: 5 } })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ filter: { user_id: '' } })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ filter: { 'country+device': 'US' } })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ filter: { click_id: 'c1' } })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ filter: { ad_id: 'ad-2' } })).toBe('ADAGG_E_BAD_PARAM');
    expect(bad({ to: T0 + 1441 * MIN })).toBe('ADAGG_E_RANGE_TOO_LARGE');
    expect(bad({ to: T0 + 1440 * MIN })).toBeUndefined();
    const top = { kind: 'popular_ads', from: T0, to: T0 + MIN };
    expect(codeOf(() => parseQueryJobRequest({ ...top, count: 0 }, limits))).toBe('ADAGG_E_BAD_PARAM');
    expect(codeOf(() => parseQueryJobRequest({ ...top, count: 101 }, limits))).toBe('ADAGG_E_BAD_PARAM');
    expect(codeOf(() => parseQueryJobRequest({ ...top, count: 2.5 }, limits))).toBe('ADAGG_E_BAD_PARAM');
    expect(codeOf(() => parseQueryJobRequest({ ...top, ad_id: 'ad-1' }, limits))).toBe('ADAGG_E_BAD_PARAM');
  });
});

describe('clickMatcher', () => {
  it('requires every filter, ad_id against the click ad and extra attributes via attrs', () => {
    const c: Click = { click_id: 'c', ad_id: 'ad-1', ts: T0, user_id: 'u1', ip: '10.0.0.1', country: 'US', attrs: { device: 'mobile' } };
    expect(clickMatcher({})(c)).toBe(true);
    expect(clickMatcher({ user_id: 'u1', country: 'US', ad_id: 'ad-1', device: 'mobile' })(c)).toBe(true);
    expect(clickMatcher({ user_id: 'u1', country: 'DE' })(c)).toBe(false);
    expect(clickMatcher({ ad_id: 'ad-2' })(c)).toBe(false);
    expect(clickMatcher({ ip: '10.0.0.2' })(c)).toBe(false);
    expect(clickMatcher({ device: 'desktop' })(c)).toBe(false);
    expect(clickMatcher({ browser: 'x' })(c)).toBe(false);
  });
});

/** A fake stream: messages of (shard, clicks), scanned in order by a fake `scanRawClicks`. */
class FakeStream {
  messages: Array<{ shard: number; clicks: Click[] }> = [];
  requests: RawScanRequest[] = [];
  gate: Promise<void> = Promise.resolve();
  publish(shards: number, clicks: Click[]): void {
    const byShard = new Map<number, Click[]>();
    for (const c of clicks) {
      const s = shardOf(c.ad_id, shards);
      byShard.set(s, [...(byShard.get(s) ?? []), c]);
    }
    for (const [shard, cs] of byShard) this.messages.push({ shard, clicks: cs });
  }
  scan: typeof scanRawClicks = async (_nc, _topo, req, onBatch): Promise<RawScanResult> => {
    this.requests.push(req);
    await this.gate;
    const msgs = this.messages.map((m, i) => ({ ...m, seq: i + 1 })).filter((m) => req.shard === undefined || m.shard === req.shard);
    const p = { scannedMessages: 0, totalMessages: msgs.length, scannedClicks: 0 };
    req.onProgress?.(p);
    if (msgs.length > req.maxMessages) return { ...p, stopped: 'limit', fromSeq: 1, lastSeq: this.messages.length };
    for (const m of msgs) {
      req.signal?.throwIfAborted();
      p.scannedMessages++;
      p.scannedClicks += m.clicks.length;
      req.onProgress?.(p);
      const b: RawBatch = { seq: m.seq, shard: m.shard, storedMs: 0, clicks: m.clicks };
      await onBatch(b);
    }
    return { ...p, stopped: 'caught_up', fromSeq: 1, lastSeq: this.messages.length };
  };
}

const OPTS: QueryJobsOptions = { shards: 4, correctionHorizonMs: 3600_000, maxFutureMs: 300_000, maxTopN: 100 };
const nc = {} as NatsConnection;

/** Polls often: every job here runs against an in-memory fake stream. */
const FAST = { timeoutMs: 5_000, everyMs: 1 };

function settle(jobs: QueryJobs, id: string): Promise<QueryJobView> {
  return waitForValue(`job ${id} finished`, () => jobs.get(id)!, (v) => v.status === 'done' || v.status === 'failed', FAST);
}

const click = (id: string, ad: string, ts: number, user = 'u1', country = 'US'): Click => ({ click_id: id, ad_id: ad, ts, user_id: user, country, ip: '10.0.0.1' });

describe('QueryJobs', () => {
  it('counts matching clicks once per click_id in [from, to), per minute, through a ShardActor', async () => {
    const s = new FakeStream();
    s.publish(4, [
      click('a', 'ad-1', T0 + 1000),
      click('b', 'ad-1', T0 + MIN + 5),
      click('a', 'ad-1', T0 + 1000), // duplicate in the same message
      click('c', 'ad-1', T0 + 2 * MIN, 'u2'), // other user
      click('d', 'ad-1', T0 - 1), // before from
      click('e', 'ad-1', T0 + 3 * MIN), // at to: excluded
      click('f', 'ad-2', T0 + 1000), // other ad
    ]);
    s.publish(4, [click('b', 'ad-1', T0 + MIN + 5), click('g', 'ad-1', T0 + 2 * MIN + 59_999, 'u1', 'DE')]); // re-sent duplicate
    const clock = new ManualClock(T0 + 3600_000);
    const jobs = new QueryJobs(nc, topology('t'), OPTS, { actors: shardActors, clock, scan: s.scan });
    const { id, status } = jobs.submit(jobs.parse({ kind: 'aggregated_count', ad_id: 'ad-1', from: T0, to: T0 + 3 * MIN, filter: { user_id: 'u1' } }));
    expect(status).toBe('queued');
    const v = await settle(jobs, id);
    expect(v.status).toBe('done');
    expect(v.result).toEqual({
      ad_id: 'ad-1',
      from: new Date(T0).toISOString(),
      to: new Date(T0 + 3 * MIN).toISOString(),
      count: 3,
      minutes: [
        { minute: new Date(T0).toISOString(), count: 1, final: true },
        { minute: new Date(T0 + MIN).toISOString(), count: 1, final: true },
        { minute: new Date(T0 + 2 * MIN).toISOString(), count: 1, final: true },
      ],
    });
    expect(v.progress.matched_clicks).toBe(5); // a, b, a, b, g before dedupe
    expect(v.progress.fraction).toBe(1);
    // Only ad-1's shard, and the stream-time window widened by maxFuture / horizon (+ slack).
    const req = s.requests[0]!;
    expect(req.shard).toBe(shardOf('ad-1', 4));
    expect(req.startMs).toBe(T0 - 300_000 - 60_000);
    expect(req.endMs).toBe(T0 + 3 * MIN + 3600_000 + 60_000);
  });

  it('popular_ads sums every shard and ranks exactly (count desc, then ad_id)', async () => {
    const s = new FakeStream();
    const cs: Click[] = [];
    let n = 0;
    for (const [ad, k] of [['ad-1', 3], ['ad-2', 5], ['ad-3', 3], ['ad-4', 1], ['ad-5', 7]] as const) {
      for (let i = 0; i < k; i++) cs.push(click(`x${n++}`, ad, T0 + i * 1000, ad === 'ad-5' ? 'u9' : 'u1'));
    }
    s.publish(4, cs);
    s.publish(4, cs.slice(0, 4)); // duplicates
    const jobs = new QueryJobs(nc, topology('t'), OPTS, { actors: shardActors, clock: new ManualClock(T0 + 3600_000), scan: s.scan });
    const { id } = jobs.submit(jobs.parse({ kind: 'popular_ads', count: 3, from: T0, to: T0 + MIN, filter: { user_id: 'u1', country: 'us' } }));
    const v = await settle(jobs, id);
    expect(v.result).toEqual({
      from: new Date(T0).toISOString(),
      to: new Date(T0 + MIN).toISOString(),
      ads: [
        { ad_id: 'ad-2', count: 5 },
        { ad_id: 'ad-1', count: 3 },
        { ad_id: 'ad-3', count: 3 },
      ],
    });
    expect(s.requests[0]!.shard).toBeUndefined();
  });

  it('runs at most maxRunningJobs at a time; the others wait queued', async () => {
    const s = new FakeStream();
    s.publish(4, [click('a', 'ad-1', T0)]);
    let open!: () => void;
    s.gate = new Promise((r) => (open = r));
    const jobs = new QueryJobs(nc, topology('t'), { ...OPTS, maxRunningJobs: 1 }, { actors: shardActors, clock: new ManualClock(T0), scan: s.scan });
    const body = { kind: 'aggregated_count', ad_id: 'ad-1', from: T0, to: T0 + MIN, filter: { user_id: 'u1' } };
    const a = jobs.submit(jobs.parse(body));
    const b = jobs.submit(jobs.parse(body));
    // The first job's scan has started (it waits at the gate).
    await waitFor('first scan started', () => s.requests.length === 1 && jobs.get(a.id)!.status === 'running', FAST);
    expect(jobs.get(a.id)!.status).toBe('running');
    expect(jobs.get(b.id)!.status).toBe('queued');
    expect(jobs.stats()).toEqual({ queued: 1, running: 1, done: 0, failed: 0, cancelled: 0 });
    open();
    expect((await settle(jobs, a.id)).status).toBe('done');
    expect((await settle(jobs, b.id)).status).toBe('done');
  });

  it('updates progress while scanning', async () => {
    const s = new FakeStream();
    for (let i = 0; i < 4; i++) s.publish(4, [click(`c${i}`, 'ad-1', T0 + i)]);
    let resume!: () => void;
    const paused = new Promise<void>((r) => (resume = r));
    let reached!: () => void;
    const atHalf = new Promise<void>((r) => (reached = r));
    const scan: typeof scanRawClicks = (nc_, topo_, req, onBatch) =>
      s.scan(nc_, topo_, req, async (b) => {
        await onBatch(b);
        if (b.seq === 2) {
          reached();
          await paused;
        }
      });
    const jobs = new QueryJobs(nc, topology('t'), OPTS, { actors: shardActors, clock: new ManualClock(T0), scan });
    const { id } = jobs.submit(jobs.parse({ kind: 'aggregated_count', ad_id: 'ad-1', from: T0, to: T0 + MIN, filter: { user_id: 'u1' } }));
    await atHalf;
    const mid = await waitForValue('progress at message 2', () => jobs.get(id)!, (v) => v.progress.scanned_messages === 2 && v.progress.matched_clicks === 2, FAST);
    expect(mid.status).toBe('running');
    expect(mid.result).toBeNull();
    expect(mid.progress).toEqual({ scanned_messages: 2, total_messages: 4, scanned_clicks: 2, matched_clicks: 2, fraction: 0.5 });
    resume();
    const done = await settle(jobs, id);
    expect(done.progress).toEqual({ scanned_messages: 4, total_messages: 4, scanned_clicks: 4, matched_clicks: 4, fraction: 1 });
    expect((done.result as { count: number }).count).toBe(4);
  });

  it('fails with ADAGG_E_SCAN_LIMIT when the window holds more messages than maxScanMessages', async () => {
    const s = new FakeStream();
    for (let i = 0; i < 5; i++) s.publish(4, [click(`c${i}`, 'ad-1', T0)]);
    const jobs = new QueryJobs(nc, topology('t'), { ...OPTS, maxScanMessages: 4 }, { actors: shardActors, clock: new ManualClock(T0), scan: s.scan });
    const { id } = jobs.submit(jobs.parse({ kind: 'aggregated_count', ad_id: 'ad-1', from: T0, to: T0 + MIN }));
    const v = await settle(jobs, id);
    expect(v.status).toBe('failed');
    expect(v.error?.code).toBe(ErrorCode.ScanLimit);
    expect(v.result).toBeNull();
    expect(v.progress.total_messages).toBe(5);
  });

  it('drops finished jobs after the TTL and the oldest finished first when full; 429 code when all are unfinished', async () => {
    const s = new FakeStream();
    const clock = new ManualClock(T0);
    const jobs = new QueryJobs(nc, topology('t'), { ...OPTS, maxJobs: 2, finishedJobTtlMs: 1000 }, { actors: shardActors, clock, scan: s.scan });
    const body = { kind: 'popular_ads', from: T0, to: T0 + MIN };
    const a = jobs.submit(jobs.parse(body));
    await settle(jobs, a.id);
    clock.advance(10);
    const b = jobs.submit(jobs.parse(body));
    await settle(jobs, b.id);
    clock.advance(10);
    const c = jobs.submit(jobs.parse(body)); // full: drops a (finished first)
    expect(jobs.get(a.id)).toBeUndefined();
    expect(jobs.get(b.id)).toBeDefined();
    await settle(jobs, c.id);
    clock.advance(1000 - 10);
    expect(jobs.get(b.id)).toBeUndefined(); // TTL
    expect(jobs.get(c.id)).toBeDefined();
    clock.advance(10);
    expect(jobs.get(c.id)).toBeUndefined();

    let open!: () => void;
    s.gate = new Promise((r) => (open = r));
    jobs.submit(jobs.parse(body));
    jobs.submit(jobs.parse(body));
    expect(codeOf(() => jobs.submit(jobs.parse(body)))).toBe(ErrorCode.TooManyJobs);
    open();
  });

  it('close() fails queued jobs and aborts running scans', async () => {
    const s = new FakeStream();
    s.publish(4, [click('a', 'ad-1', T0)]);
    let open!: () => void;
    s.gate = new Promise((r) => (open = r));
    const jobs = new QueryJobs(nc, topology('t'), { ...OPTS, maxRunningJobs: 1 }, { actors: shardActors, clock: new ManualClock(T0), scan: s.scan });
    const body = { kind: 'popular_ads', from: T0, to: T0 + MIN };
    const a = jobs.submit(jobs.parse(body));
    const b = jobs.submit(jobs.parse(body));
    // a is running (its scan waits at the gate), b is queued behind it.
    await waitFor('first scan started', () => s.requests.length === 1 && jobs.get(a.id)!.status === 'running', FAST);
    const closing = jobs.close();
    open();
    await closing;
    expect(jobs.get(a.id)).toMatchObject({ status: 'failed', error: { code: ErrorCode.ScanFailed } });
    expect(jobs.get(b.id)).toMatchObject({ status: 'failed', error: { code: ErrorCode.ScanFailed } });
  });

  it('refuses ranges older than the raw retention', () => {
    const jobs = new QueryJobs(nc, topology('t'), { ...OPTS, rawRetentionMs: 3600_000 }, { actors: shardActors, clock: new ManualClock(T0 + 2 * 3600_000) });
    expect(codeOf(() => jobs.parse({ kind: 'popular_ads', from: T0, to: T0 + MIN }))).toBe('ADAGG_E_BAD_PARAM');
    expect(codeOf(() => jobs.parse({ kind: 'popular_ads', from: T0 + 3600_000 + 300_000, to: T0 + 3600_000 + 360_000 }))).toBeUndefined();
  });
});

describe('queryJobRoutes', () => {
  it('202 with a self link, GET the job, 404 unknown, 400 bad JSON, 429 when every kept job is unfinished', async () => {
    const s = new FakeStream();
    s.publish(4, [click('a', 'ad-1', T0)]);
    let open!: () => void;
    s.gate = new Promise((r) => (open = r));
    const jobs = new QueryJobs(nc, topology('t'), { ...OPTS, maxJobs: 1 }, { actors: shardActors, clock: new ManualClock(T0 + 3600_000), scan: s.scan });
    const app = Fastify();
    // As in src/gateway/server.ts: bodies arrive as strings, errors leave as {code, error}.
    await app.register(adaggHttp);
    queryJobRoutes(app, jobs);
    const body = JSON.stringify({ kind: 'aggregated_count', ad_id: 'ad-1', from: T0, to: T0 + MIN, filter: { user_id: 'u1' } });
    const posted = await app.inject({ method: 'POST', url: '/v1/queries', headers: { 'content-type': 'application/json' }, body });
    expect(posted.statusCode).toBe(202);
    const { id } = posted.json<{ id: string }>();
    expect(posted.json()).toEqual({ id, status: 'queued', links: { self: `/v1/queries/${id}` } });
    expect(posted.headers.location).toBe(`/v1/queries/${id}`);

    const full = await app.inject({ method: 'POST', url: '/v1/queries', headers: { 'content-type': 'application/json' }, body });
    expect(full.statusCode).toBe(429);
    expect(full.json().code).toBe(ErrorCode.TooManyJobs);
    const badJson = await app.inject({ method: 'POST', url: '/v1/queries', headers: { 'content-type': 'application/json' }, body: '{"kind"' });
    expect(badJson.statusCode).toBe(400);
    expect(badJson.json().code).toBe('ADAGG_E_BAD_PARAM');
    const missing = await app.inject({ method: 'GET', url: '/v1/queries/q_nope' });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('ADAGG_E_NOT_FOUND');

    open();
    await settle(jobs, id);
    const got = await app.inject({ method: 'GET', url: `/v1/queries/${id}` });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({
      id,
      kind: 'aggregated_count',
      status: 'done',
      progress: { scanned_messages: 1, total_messages: 1, scanned_clicks: 1, matched_clicks: 1, fraction: 1 },
      result: { ad_id: 'ad-1', count: 1 },
      error: null,
      created_at: new Date(T0 + 3600_000).toISOString(),
      finished_at: new Date(T0 + 3600_000).toISOString(),
    });
    await app.close();
  });
});
