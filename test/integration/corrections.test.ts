import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '../../src/model/partition.ts';
import { isoOf, MINUTE_MS, minuteOf, minuteStartMs } from '../../src/model/time.ts';
import type { CorrectionRecord } from '../../src/runtime/corrections-outbox.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { topology } from '../../src/runtime/topology.ts';
import { chunked, killAllChildren, LoadClient, stopBackground } from '../helpers/cluster-procs.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { serviceEnv, spawnService, type ServiceProcess } from '../helpers/service-process.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { pace, waitFor } from '../helpers/wait.ts';

/**
 * The corrections feed and minute states (docs/history.md, "Corrections feed"): late clicks to
 * closed minutes publish records with the stored value before and the committed value after;
 * per field the latest record equals the stored count, also after SIGKILLs of the service
 * mid-stream; a minute's state moves open → closed → sealed as the watermark passes it and the
 * correction horizon.
 */

/** Every record of the corrections stream, in stream order. */
async function readFeed(nc: NatsConnection, prefix: string): Promise<CorrectionRecord[]> {
  const t = topology(prefix);
  const jsm = await jetstreamManager(nc);
  const last = (await jsm.streams.info(t.correctionsStream)).state.last_seq;
  const out: CorrectionRecord[] = [];
  if (last === 0) return out;
  const consumer = await jetstream(nc).consumers.get(t.correctionsStream);
  while (out.length === 0 || (out.at(-1) as CorrectionRecord & { _seq: number })._seq < last) {
    const batch = await consumer.fetch({ max_messages: 1000, expires: 2000 });
    for await (const m of batch) {
      out.push({ ...m.json<CorrectionRecord>(), _seq: m.seq } as CorrectionRecord & { _seq: number });
      if (m.seq >= last) break;
    }
  }
  return out;
}

const fieldKey = (r: { unit: unknown; ad_id: string; minute: string; dim: string | null; value: string | null }): string =>
  `${String(r.unit)}|${r.ad_id}|${r.minute}|${r.dim ?? ''}|${r.value ?? ''}`;

/** The latest record per field, in stream order (what a follower keeps). */
function latest(records: readonly CorrectionRecord[]): Map<string, CorrectionRecord> {
  const m = new Map<string, CorrectionRecord>();
  for (const r of records) m.set(fieldKey(r), r);
  return m;
}

async function stored(redis: Redis, keys: RedisKeys, r: CorrectionRecord): Promise<number> {
  return Number((await redis.hget(keys.counts(r.unit, minuteOf(Date.parse(r.minute)), r.dim, r.value), r.ad_id)) ?? 0);
}

describe('corrections feed and minute states', () => {
  let servers: TestServers;
  let nc: NatsConnection;
  let redis: Redis;
  let stack: TestStack | undefined;
  let svc: ServiceProcess | undefined;

  beforeAll(async () => {
    servers = await startTestServers();
    nc = await connect({ servers: servers.natsUrl });
    redis = new Redis(servers.redisUrl);
  });
  afterEach(async () => {
    await stopBackground();
    await stack?.close();
    stack = undefined;
    svc?.child.kill('SIGKILL');
    if (svc) await svc.exited;
    svc = undefined;
    await killAllChildren();
  });
  afterAll(async () => {
    await nc?.close();
    redis?.disconnect();
    await servers?.stop();
  });

  it('late clicks to a closed minute: records with old, new, cause and seq; the minute moves open → closed → sealed', async () => {
    // A minute that ended at least 20 s ago; the horizon lets clicks into it for about 25 s more,
    // after which (with lateness + idle + max future, 3 s) the minute seals.
    const t0 = Date.now();
    const a = minuteOf(t0 - 20_000) - 1;
    const aEnd = minuteStartMs(a + 1);
    const horizon = t0 - aEnd + 25_000;
    stack = await startStack(
      { correctionHorizonMs: horizon, maxFutureMs: 1000, allowedLatenessMs: 1000, idleTimeoutMs: 1000 },
      servers,
    );
    const { url, opts } = stack;
    const keys = new RedisKeys(opts.prefix);
    const shard = shardOf('ad-x', opts.shards);
    const line = (id: string, ts: number, country: string): string => JSON.stringify({ click_id: id, ad_id: 'ad-x', ts, country });
    const query = async (): Promise<any> => (await getJson(`${url}/v1/ads/ad-x/aggregated_count?from=${minuteStartMs(a)}&to=${Date.now() + MINUTE_MS}`)).body;

    // The current minute: open.
    expect((await postClicks(url, [line('now-1', Date.now() - 100, 'US')])).status).toBe(200);
    const open = await query();
    expect(open.minutes.at(-1).state, JSON.stringify(open.minutes)).toBe('open');
    expect(open.minutes.at(-1).final).toBe(false);
    expect(open.minutes[0].state).toBe('closed');

    // Minute a is closed (the idle watermark passed it long ago): three late clicks, committed.
    const first = [line('l1', aEnd - 1000, 'US'), line('l2', aEnd - 1100, 'US'), line('l3', aEnd - 1200, 'FR')];
    expect((await postClicks(url, first)).status).toBe(200);
    const totalKey = keys.counts(shard, a, null, null);
    await waitFor('first late clicks committed', async () => (await redis.hget(totalKey, 'ad-x')) === '3', { timeoutMs: 15_000 });
    // Two more, one a duplicate of an earlier id (not counted).
    expect((await postClicks(url, [line('l4', aEnd - 1300, 'US'), line('l1', aEnd - 1000, 'US')])).status).toBe(200);
    await waitFor('second late clicks committed', async () => (await redis.hget(totalKey, 'ad-x')) === '4', { timeoutMs: 15_000 });
    expect(Date.now()).toBeLessThan(aEnd + horizon); // still inside the horizon: the test's timing held

    const feed = (await readFeed(nc, opts.prefix)).filter((r) => r.minute === isoOf(minuteStartMs(a)));
    const totals = feed.filter((r) => r.dim === null);
    expect(totals.map((r) => [r.old, r.new, r.cause])).toEqual([
      [0, 3, 'late_click'],
      [3, 4, 'late_click'],
    ]);
    expect(totals[1]!.seq).toBeGreaterThan(totals[0]!.seq);
    expect(totals[0]).toMatchObject({ ad_id: 'ad-x', unit: shard, rule: null, value: null });
    const committedSeq = Number(await redis.hget(keys.meta(shard), 'seq'));
    expect(totals[1]!.seq).toBeLessThanOrEqual(committedSeq);
    const us = feed.filter((r) => r.dim === 'country' && r.value === 'US').map((r) => [r.old, r.new]);
    expect(us).toEqual([
      [0, 2],
      [2, 3],
    ]);
    // FR did not change in the second commit: no record for it there.
    expect(feed.filter((r) => r.value === 'FR').map((r) => [r.old, r.new])).toEqual([[0, 1]]);
    for (const r of latest(feed).values()) expect(await stored(redis, keys, r), fieldKey(r)).toBe(r.new);

    const closed = await query();
    expect(closed.minutes[0]).toMatchObject({ count: 4, final: true, state: 'closed' });

    // Past the horizon: sealed, and sealed_through names it.
    await waitFor('minute a sealed', async () => (await query()).minutes[0].state === 'sealed', { timeoutMs: 60_000, everyMs: 250 });
    const sealed = await query();
    expect(Date.parse(sealed.sealed_through)).toBeGreaterThanOrEqual(minuteStartMs(a));
    expect(sealed.minutes[0].count).toBe(4);
    expect(sealed.minutes.at(-1).state).not.toBe('sealed');
  }, 120_000);

  it('SIGKILL mid-stream: per field the latest record equals the stored count, and no changed field is missing', async () => {
    const prefix = uniquePrefix();
    const env = serviceEnv(servers, prefix, { ADAGG_SNAPSHOT_INTERVAL_MS: '200', ADAGG_SNAPSHOT_EVERY_MESSAGES: '10' });
    svc = await spawnService(env);
    const port = Number(new URL(svc.url).port);
    // Clicks into minutes the idle watermark closed before they arrive: each is a correction.
    const now = Date.now();
    const first = minuteOf(now) - 6;
    const countries = ['US', 'DE', 'JP'];
    const truth = new Map<string, number>();
    const lines: string[] = [];
    const sent = new Set<number>();
    let r = 17;
    const rand = (): number => ((r = (r * 1103515245 + 12345) % 2147483648) / 2147483648);
    for (let i = 0; i < 6000; i++) {
      const dup = i > 0 && rand() < 0.05;
      const j = dup ? Math.floor(rand() * i) : i;
      const ad = `ad-${j % 24}`;
      const minute = first + (Math.floor(j / 24) % 4);
      const ts = minuteStartMs(minute) + ((j * 7919) % MINUTE_MS);
      const country = countries[Math.floor(j / 96) % 3]!;
      lines.push(JSON.stringify({ click_id: `k${j}`, ad_id: ad, ts, country }));
      if (!sent.has(j)) {
        sent.add(j);
        for (const [dim, value] of [[null, null], ['country', country]] as const) {
          const k = `${shardOf(ad, 4)}|${ad}|${isoOf(minuteStartMs(minute))}|${dim ?? ''}|${value ?? ''}`;
          truth.set(k, (truth.get(k) ?? 0) + 1);
        }
      }
    }
    // First a click per ad in the current minute: every shard's watermark (event time − lateness)
    // passes the stream's minutes at once, so each of its clicks corrects a closed minute.
    const wm = Array.from({ length: 24 }, (_, i) => JSON.stringify({ click_id: `w${i}`, ad_id: `ad-${i}`, ts: Date.now() - 1000, country: 'US' }));
    expect((await postClicks(svc.url, wm)).status).toBe(200);
    const load = new LoadClient(() => svc!.url, chunked(lines, 60), 15).start();
    const restart = async (): Promise<void> => {
      svc!.child.kill('SIGKILL');
      await svc!.exited;
      svc = await spawnService(env, port);
    };
    await waitFor('a third posted', () => load.posted >= 30, { timeoutMs: 60_000, everyMs: 5 });
    await restart();
    await waitFor('two thirds posted', () => load.posted >= 65, { timeoutMs: 60_000, everyMs: 5 });
    await restart();
    await load.done;

    const keys = new RedisKeys(prefix);
    const storedOf = async (k: string): Promise<number> => {
      const [unit, ad, minute, dim, value] = k.split('|') as [string, string, string, string, string];
      return Number((await redis.hget(keys.counts(Number(unit), minuteOf(Date.parse(minute)), dim || null, dim ? value : null), ad)) ?? 0);
    };
    // Every count is exact in the store (so every commit that changed one is written).
    await waitFor(
      'stored counts equal the truth',
      async () => {
        for (const [k, n] of truth) if ((await storedOf(k)) !== n) return false;
        return true;
      },
      { timeoutMs: 60_000, everyMs: 500 },
    );
    await pace(500);
    const feed = await readFeed(nc, prefix);
    const last = latest(feed);
    const bad: string[] = [];
    for (const [k, n] of truth) {
      const rec = last.get(k);
      if (!rec) bad.push(`${k}: no record (stored ${n})`);
      else if (rec.new !== n) bad.push(`${k}: latest record ${rec.new}, stored ${n}`);
    }
    for (const k of last.keys()) if (!truth.has(k)) bad.push(`${k}: a record for a field no click touched`);
    expect(bad.slice(0, 10), `${bad.length} bad of ${truth.size}`).toEqual([]);
    expect(feed.every((x) => x.cause === 'late_click')).toBe(true);
    console.log(`FIGURE corrections_sigkill fields=${truth.size} records=${feed.length} retries=${load.retries}`);
  }, 150_000);
});
