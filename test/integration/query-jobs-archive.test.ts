import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tailStartMs } from '../../src/gateway/query-job-archive.ts';
import { ArchiveQuerySource } from '../../src/runtime/archive/archive-query-source.ts';
import { connectNats } from '../../src/runtime/nats.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { lastSequence } from '../../src/runtime/streams.ts';
import { topology } from '../../src/runtime/topology.ts';
import { writeDeadLetterFiles, writeRawFiles, type RawRow } from '../helpers/archive-fixtures.ts';
import { realisticStream, type GenClick } from '../helpers/click-stream.ts';
import { settledQueryJob } from '../helpers/settle.ts';
import { startTestServers, type TestServers } from '../helpers/servers.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * Query jobs over the raw archive (issue 10, item 7): a stack with the archive on (files every
 * 200 ms) counts a first half of the clicks, and its archivers write them all; then the archivers
 * are fenced (a newer epoch in Redis, as when another node takes the units over), so the second
 * half — which also sends again some clicks of the first (same click_id, later messages) — stays
 * only in the stream. A job over the whole range thus reads the archive by DuckDB SQL up to each
 * unit's cut and the stream tail by the raw scan; its results equal an independent recount of the
 * posted clicks (each click_id once, the first copy), for user_id and ip filters, one ad and
 * popular_ads. A range of 3 days is accepted (the 24 h cap is for the stream alone); 401 days is refused.
 */

const MIN = 60_000;
const SHARDS = 3;
const HOT_USER = 'u-hot';
const HOT_IP = '10.9.9.9';

function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

type Filter = Record<string, string>;

/** Distinct clicks (first copy of each click_id, in send order) in [from, to) matching the filter. */
function truthClicks(sent: readonly GenClick[], fromMin: number, toMin: number, filter: Filter): GenClick[] {
  const seen = new Set<string>();
  const out: GenClick[] = [];
  for (const c of sent) {
    if (seen.has(c.click_id)) continue;
    seen.add(c.click_id);
    if (c.ts < fromMin * MIN || c.ts >= toMin * MIN) continue;
    if (Object.entries(filter).every(([k, v]) => (c as unknown as Record<string, string>)[k] === v)) out.push(c);
  }
  return out;
}

function perMinute(sent: readonly GenClick[], ad: string, fromMin: number, toMin: number, filter: Filter): Map<number, number> {
  const per = new Map<number, number>();
  for (const c of truthClicks(sent, fromMin, toMin, { ...filter, ad_id: ad })) {
    const m = Math.floor(c.ts / MIN);
    per.set(m, (per.get(m) ?? 0) + 1);
  }
  return per;
}

/** The aggregated_count result: every minute of a range up to 1440 minutes, else only those with clicks. */
function truthAdCount(sent: readonly GenClick[], ad: string, fromMin: number, toMin: number, filter: Filter): unknown {
  const per = perMinute(sent, ad, fromMin, toMin, filter);
  const minutes = [];
  let count = 0;
  const dense = toMin - fromMin <= 1440;
  for (const m of dense ? Array.from({ length: toMin - fromMin }, (_, i) => fromMin + i) : [...per.keys()].sort((a, b) => a - b)) {
    count += per.get(m) ?? 0;
    minutes.push({ minute: new Date(m * MIN).toISOString(), count: per.get(m) ?? 0, final: true });
  }
  return { ad_id: ad, from: new Date(fromMin * MIN).toISOString(), to: new Date(toMin * MIN).toISOString(), count, minutes };
}

function truthTop(sent: readonly GenClick[], n: number, fromMin: number, toMin: number, filter: Filter): unknown {
  const per = new Map<string, number>();
  for (const c of truthClicks(sent, fromMin, toMin, filter)) per.set(c.ad_id, (per.get(c.ad_id) ?? 0) + 1);
  const ads = [...per].map(([ad_id, count]) => ({ ad_id, count }));
  ads.sort((a, b) => b.count - a.count || (a.ad_id < b.ad_id ? -1 : 1));
  return { from: new Date(fromMin * MIN).toISOString(), to: new Date(toMin * MIN).toISOString(), ads: ads.slice(0, n) };
}

async function post(url: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/v1/queries`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

describe('query jobs over the raw archive and the stream tail', () => {
  let stack: TestStack;
  let nc: NatsConnection;
  let redis: Redis;
  /** Every click as sent, in send order (duplicates included). */
  const sent: GenClick[] = [];
  /** Archiver units and their cut (progress `seq`) once fenced. */
  const cuts = new Map<string, number>();
  let streamLastAtFence = 0;
  /** When the second half started to be sent (after the fence). */
  let secondAt = 0;
  const now = Date.now();
  const stream = realisticStream({ seed: 23, events: 6000, now, ads: 40, startAgoMs: 9 * MIN, maxLateMs: 3 * MIN, dupFraction: 0.04, malformedFraction: 0 });
  for (const c of new Set(stream.clicks)) {
    const h = hash(c.click_id);
    if (h % 9 === 0) c.user_id = HOT_USER;
    if ((h >>> 8) % 11 === 0) c.ip = HOT_IP;
  }
  const half = Math.floor(stream.clicks.length / 2);
  const first = stream.clicks.slice(0, half);
  // The second half, and again every 7th click of the first half: the same clicks in later
  // messages, past the archive's cut (duplicates across the two sides).
  const again = first.filter((_, i) => i % 7 === 3);
  const second = [...stream.clicks.slice(half), ...again];
  const minutes = stream.clicks.map((c) => Math.floor(c.ts / MIN));
  const firstMin = Math.min(...minutes);
  const endMin = Math.max(...minutes) + 1;

  const send = async (part: readonly GenClick[]): Promise<void> => {
    for (let i = 0; i < part.length; i += 400) {
      const chunk = part.slice(i, i + 400);
      const res = await postClicks(stack.url, chunk.map((c) => JSON.stringify(c)));
      expect(res.status).toBe(200);
      expect(res.body.accepted).toBe(chunk.length);
      sent.push(...chunk);
    }
  };

  beforeAll(async () => {
    stack = await startStack({ shards: SHARDS, archive: 'on', archiveFlushMs: 200 });
    nc = await connectNats(stack.opts.natsUrl, 'query-jobs-archive-test');
    redis = new Redis(stack.opts.redisUrl);
    const keys = new RedisKeys(stack.opts.prefix);
    const topo = topology(stack.opts.prefix);
    const units = [...Array.from({ length: SHARDS }, (_, s) => `a-s${s}`), 'a-hot'];
    const progress = async (u: string): Promise<number> => Number((await redis.hget(keys.archive(u), 'seq')) ?? 0);

    await send(first);
    // Each unit's last message: its subject's (the hot unit has none here).
    const jsm = await jetstreamManager(nc);
    const lastOf = async (subject: string): Promise<number> => (await jsm.streams.getMessage(topo.clicksStream, { last_by_subj: subject }))?.seq ?? 0;
    const lasts = await Promise.all(Array.from({ length: SHARDS }, (_, s) => lastOf(topo.clickSubject(s))));
    expect(lasts.every((l) => l > 0)).toBe(true);
    await waitFor('every shard\'s archiver wrote the first half', async () => (await Promise.all(lasts.map((l, s) => progress(`a-s${s}`).then((p) => p >= l)))).every(Boolean), {
      timeoutMs: 60_000,
      everyMs: 50,
    });
    // Fence the archivers: their next commit is refused and they stop for good, so what follows stays in the stream only.
    for (const u of units) await redis.incr(keys.epoch(u));
    for (const u of units) cuts.set(u, await progress(u));
    secondAt = Date.now();
    await send(second);
    streamLastAtFence = await lastSequence(nc, topo.clicksStream);
  }, 120_000);

  afterAll(async () => {
    redis?.disconnect();
    await nc?.drain();
    await stack?.close();
  });

  it('counts user_id and ip filters exactly: archive up to the cut, stream tail after it, each click once', async () => {
    // The tail exists: the stream holds messages past every cut, and the archivers did not move.
    expect(streamLastAtFence).toBeGreaterThan(Math.max(...cuts.values()));
    // The tail scan starts at the first message past a unit's cut (stored after the fence), or now when there is none.
    const topo = topology(stack.opts.prefix);
    for (let s = 0; s < SHARDS; s++) {
      const t = await tailStartMs(nc, topo.clicksStream, topo.clickSubject(s), cuts.get(`a-s${s}`)!, Date.now());
      expect(t).toBeGreaterThanOrEqual(secondAt - 1000);
      expect(t).toBeLessThanOrEqual(Date.now());
    }
    const beforeHot = Date.now();
    expect(await tailStartMs(nc, topo.clicksStream, topo.hotSubjects, cuts.get('a-hot')!, beforeHot)).toBe(beforeHot);
    const cases: Array<{ name: string; body: Record<string, unknown>; expected: () => unknown; tail: { from: number; to: number; filter: Filter } }> = [];
    for (const [label, filter] of [
      ['user_id', { user_id: HOT_USER }],
      ['ip', { ip: HOT_IP }],
    ] as const) {
      cases.push({
        name: `aggregated_count ad-0 by ${label}`,
        body: { kind: 'aggregated_count', ad_id: 'ad-0', from: firstMin * MIN, to: endMin * MIN, filter },
        expected: () => truthAdCount(sent, 'ad-0', firstMin, endMin, filter),
        tail: { filter: { ...filter, ad_id: 'ad-0' }, from: firstMin, to: endMin },
      });
      cases.push({
        name: `popular_ads by ${label}`,
        body: { kind: 'popular_ads', count: 10, from: firstMin * MIN, to: endMin * MIN, filter },
        expected: () => truthTop(sent, 10, firstMin, endMin, filter),
        tail: { filter, from: firstMin, to: endMin },
      });
    }
    cases.push({
      name: 'popular_ads on ad-2 by ip and user_id, a sub-range',
      body: { kind: 'popular_ads', count: 3, from: (firstMin + 2) * MIN, to: (endMin - 1) * MIN, filter: { ad_id: 'ad-2', user_id: HOT_USER } },
      expected: () => truthTop(sent, 3, firstMin + 2, endMin - 1, { ad_id: 'ad-2', user_id: HOT_USER }),
      tail: { filter: { ad_id: 'ad-2', user_id: HOT_USER }, from: firstMin + 2, to: endMin - 1 },
    });
    cases.push({
      name: 'aggregated_count ad-1 without a filter',
      body: { kind: 'aggregated_count', ad_id: 'ad-1', from: firstMin * MIN, to: endMin * MIN },
      expected: () => truthAdCount(sent, 'ad-1', firstMin, endMin, {}),
      tail: { filter: { ad_id: 'ad-1' }, from: firstMin, to: endMin },
    });
    const submitted = await Promise.all(cases.map((c) => post(stack.url, c.body)));
    for (const s of submitted) expect(s.status).toBe(202);
    const done = await Promise.all(submitted.map((s) => settledQueryJob(stack.url, s.body.id, { everyMs: 100, timeoutMs: 120_000 })));
    done.forEach((job, i) => {
      const c = cases[i]!;
      expect(job.error, c.name).toBeNull();
      expect(job.status, c.name).toBe('done');
      expect(job.result, c.name).toEqual(c.expected());
      // Both sides took part: files and their clicks, and the tail's messages and clicks.
      expect(job.progress.archive_files, c.name).toBeGreaterThan(0);
      expect(job.progress.archive_clicks, c.name).toBeGreaterThan(0);
      expect(job.progress.scanned_messages, c.name).toBeGreaterThan(0);
      expect(job.progress.matched_clicks, c.name).toBeGreaterThan(0);
      // The scan counted exactly the tail's matching clicks (copies included): nothing at or below a cut.
      const { from, to, filter: f } = c.tail;
      const tailMatches = second.filter((x) => x.ts >= from * MIN && x.ts < to * MIN && Object.entries(f).every(([k, v]) => (x as unknown as Filter)[k] === v));
      expect(job.progress.matched_clicks, c.name).toBe(tailMatches.length);
    });
    // The comparisons mean something: non-trivial counts, and the cross-side duplicates matched the filters.
    expect((done[0].result as { count: number }).count).toBeGreaterThan(30);
    expect((done[1].result as { ads: unknown[] }).ads).toHaveLength(10);
    expect(again.filter((c) => c.user_id === HOT_USER && c.ad_id === 'ad-0').length).toBeGreaterThan(0);
    expect(again.filter((c) => c.ip === HOT_IP).length).toBeGreaterThan(0);
  });

  it('a range of 3 days is answered (only the minutes with clicks listed); 401 days is refused with ADAGG_E_RANGE_TOO_LARGE', async () => {
    const from = endMin - 3 * 1440;
    const job = await post(stack.url, { kind: 'aggregated_count', ad_id: 'ad-0', from: from * MIN, to: endMin * MIN, filter: { ip: HOT_IP } });
    expect(job.status).toBe(202);
    const done = await settledQueryJob(stack.url, job.body.id, { timeoutMs: 120_000 });
    expect(done.error).toBeNull();
    expect(done.result).toEqual(truthAdCount(sent, 'ad-0', from, endMin, { ip: HOT_IP }));
    expect(done.result.minutes.length).toBeGreaterThan(0);
    expect(done.result.minutes.length).toBeLessThan(20);

    const top = await post(stack.url, { kind: 'popular_ads', count: 5, from: from * MIN, to: endMin * MIN, filter: { user_id: HOT_USER } });
    const topDone = await settledQueryJob(stack.url, top.body.id, { timeoutMs: 120_000 });
    expect(topDone.result).toEqual(truthTop(sent, 5, from, endMin, { user_id: HOT_USER }));

    const big = await post(stack.url, { kind: 'popular_ads', from: (endMin - 401 * 1440) * MIN, to: endMin * MIN, filter: { user_id: HOT_USER } });
    expect(big.status).toBe(400);
    expect(big.body.code).toBe('ADAGG_E_RANGE_TOO_LARGE');
    const ok = await post(stack.url, { kind: 'popular_ads', from: (endMin - 400 * 1440) * MIN, to: endMin * MIN, filter: { user_id: 'nobody' } });
    expect(ok.status).toBe(202);
    const okDone = await settledQueryJob(stack.url, ok.body.id, { timeoutMs: 120_000 });
    expect(okDone).toMatchObject({ status: 'done', result: { ads: [] } });
  });

  it('a pre-aggregated filter (country) equals the synchronous endpoint', async () => {
    const job = await post(stack.url, { kind: 'aggregated_count', ad_id: 'ad-0', from: firstMin * MIN, to: endMin * MIN, filter: { country: 'de' } });
    const done = await settledQueryJob(stack.url, job.body.id, { timeoutMs: 120_000 });
    expect(done.status).toBe('done');
    expect(done.result).toEqual(truthAdCount(sent, 'ad-0', firstMin, endMin, { country: 'DE' }));
    // The actors count the same clicks (they may still be applying the tail: wait for them).
    await waitFor('the synchronous count equals the job', async () => {
      const rest = await getJson(`${stack.url}/v1/ads/ad-0/aggregated_count?from=${firstMin * MIN}&to=${endMin * MIN}&country=DE`);
      return rest.status === 200 && rest.body.count === done.result.count;
    }, { timeoutMs: 30_000, everyMs: 100 });
  });
});

/**
 * The archive side alone, over fixture files written as the archiver writes them (layout.ts) and
 * the progress hashes in a real Redis: what it takes and leaves, row by row.
 */
describe('ArchiveQuerySource over fixture files', () => {
  let servers: TestServers;
  let redis: Redis;
  let root: string;
  const prefix = 'qa';
  const keys = new RedisKeys(prefix);
  const T = Date.UTC(2026, 10, 20, 10, 30, 0);
  const M = T / MIN;
  const s0 = `${prefix}.clicks.0`;
  const hot = `${prefix}.hot.6131.1.0`;
  const row = (click_id: string, ad_id: string, subject: string, seq: number, pos: number, extra: Partial<RawRow> = {}): RawRow => ({
    click_id,
    ad_id,
    ts: T,
    user_id: 'u1',
    subject,
    seq,
    pos,
    ...extra,
  });
  const source = (): ArchiveQuerySource =>
    new ArchiveQuerySource(redis, keys, { root, clickSubject: (s) => `${prefix}.clicks.${s}`, hotPrefix: `${prefix}.hot.`, marginMs: 3600_000 });

  beforeAll(async () => {
    servers = await startTestServers();
    redis = new Redis(servers.redisUrl);
    root = await mkdtemp(path.join(os.tmpdir(), 'adagg-qa-'));
    await writeRawFiles(root, 's0', [
      row('c1', 'a1', s0, 1, 0),
      row('c2', 'a1', s0, 2, 0),
      row('c4', 'a1', s0, 3, 1, { attrs: JSON.stringify({ device: 'tv' }) }),
      // A later copy of c1, in another minute: the first copy decides.
      row('c1', 'a1', s0, 5, 0, { ts: T + 2 * MIN }),
      // The same click_id on another ad is another click.
      row('c1', 'a2', s0, 5, 1),
      // c8: its first copy is user u3's; a later copy says u2 (a filter on u2 must not count it).
      row('c8', 'a3', s0, 2, 1, { user_id: 'u3' }),
      row('c8', 'a3', s0, 6, 0, { user_id: 'u2' }),
      // Past the cut of s0 (8): the stream tail's.
      row('c3', 'a1', s0, 9, 0),
    ]);
    await writeRawFiles(root, 'hot', [row('c5', 'a1', hot, 4, 0), row('c6', 'a1', hot, 8, 0)]);
    // Backfilled rows (subject `backfill`): counted after every stream row, whatever their seq.
    await writeRawFiles(root, 's99', [row('c7', 'a1', 'backfill', 1, 0), row('c1', 'a1', 'backfill', 1, 1, { ts: T + 5 * MIN })]);
    // c2's copy at seq 2 was refused as too old by the shard actor.
    await writeDeadLetterFiles(root, [{ seq: 1, reason: 'too_old', at: T + 3 * MIN, src_unit: 's0', src_seq: 2, click_id: 'c2', ad_id: 'a1', ts: T }]);
    await redis.hset(keys.archive('a-s0'), { seq: 8, pending: '[]' });
    await redis.hset(keys.archive('a-hot'), { seq: 7, pending: '[]' });
  });
  afterAll(async () => {
    redis?.disconnect();
    await servers?.stop();
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('takes rows up to each cut and backfilled rows, without too-old refusals, the first copy of each (ad, click)', async () => {
    const src = source();
    const cuts = await src.cuts([0]);
    expect(cuts).toEqual({ shards: new Map([[0, 8]]), hot: 7 });
    const q = await src.plan(cuts, { fromMs: T - 30 * MIN, toMs: T + 30 * MIN, adId: 'a1', filter: { user_id: 'u1' }, by: 'minute' });
    expect(q.rawFiles).toHaveLength(3);
    expect(await src.counts(q)).toEqual([{ adId: 'a1', minute: M, clicks: 4 }]); // c1, c4, c5, c7
    const byAttr = await src.plan(cuts, { fromMs: T - 30 * MIN, toMs: T + 30 * MIN, filter: { device: 'tv' }, by: 'ad' });
    expect(await src.counts(byAttr)).toEqual([{ adId: 'a1', minute: undefined, clicks: 1 }]);
    const all = await src.plan(cuts, { fromMs: T - 30 * MIN, toMs: T + 30 * MIN, filter: { ip: 'nowhere' }, by: 'ad' });
    expect(await src.counts(all)).toEqual([]);
    const laterCopy = await src.plan(cuts, { fromMs: T - 30 * MIN, toMs: T + 30 * MIN, filter: { user_id: 'u2' }, by: 'ad' });
    expect(await src.counts(laterCopy)).toEqual([]);
    const firstCopy = await src.plan(cuts, { fromMs: T - 30 * MIN, toMs: T + 30 * MIN, filter: { user_id: 'u3' }, by: 'ad' });
    expect(await src.counts(firstCopy)).toEqual([{ adId: 'a3', minute: undefined, clicks: 1 }]);
    const pairs = await src.archivedPairs(q, [['a1', 'c1'], ['a1', 'c2'], ['a1', 'c3'], ['a1', 'c6'], ['a1', 'c7'], ['a2', 'c1'], ['a1', 'cx']]);
    // a2's c1 is outside this query (adId a1); c2 refused, c3 and c6 past their cuts.
    expect([...pairs].sort()).toEqual(['a1\nc1', 'a1\nc7']);
  });

  it('a commit whose files are not all renamed yet moves the cut back before it', async () => {
    const final = path.join(root, 'raw', 'date=2026-11-20', 'hour=10', 's0-000000000006-000000000008.parquet');
    await redis.hset(keys.archive('a-s0'), { seq: 8, pending: JSON.stringify([[`${final}.tmp-1`, final]]) });
    const cuts = await source().cuts([0]);
    expect(cuts.shards.get(0)).toBe(5);
    const q = await source().plan(cuts, { fromMs: T - 30 * MIN, toMs: T + 30 * MIN, adId: 'a1', filter: {}, by: 'minute' });
    expect(await source().counts(q)).toEqual([{ adId: 'a1', minute: M, clicks: 4 }]);
    await redis.hset(keys.archive('a-s0'), { pending: '[]' });
  });
});
