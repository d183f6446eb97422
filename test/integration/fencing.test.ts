import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { actorRegistry } from '../../src/actors/index.ts';
import { AdaggError } from '../../src/errors.ts';
import type { Click } from '../../src/model/click.ts';
import { compileOptions } from '../../src/options.ts';
import { ClickProducer } from '../../src/runtime/producer.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { RedisShardStore } from '../../src/runtime/redis-shard-store.ts';
import { RuntimeNode } from '../../src/runtime/runtime-node.ts';
import type { ShardCommit } from '../../src/runtime/shard-store.ts';
import type { Supervisor } from '../../src/runtime/supervisor.ts';
import { topology } from '../../src/runtime/topology.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { TEST_OPTIONS } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

const MIN = 60_000;

/** Everything Redis holds for a shard's keys (under a prefix), as plain comparable values. */
async function dump(redis: Redis, prefix: string): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  const keys = (await redis.keys(`${prefix}:*`)).sort();
  for (const k of keys) {
    const type = await redis.type(k);
    if (type === 'hash') out[k] = await redis.hgetall(k);
    else if (type === 'string') out[k] = (await redis.getBuffer(k))!.toString('hex');
    else if (type === 'set') out[k] = (await redis.smembers(k)).sort();
    else out[k] = type;
  }
  return out;
}

describe('fencing', () => {
  let servers: TestServers;
  const redisClients: Redis[] = [];
  const redis = (): Redis => {
    const r = new Redis(servers.redisUrl, { maxRetriesPerRequest: 3 });
    redisClients.push(r);
    return r;
  };

  beforeAll(async () => {
    servers = await startTestServers();
  });
  afterAll(async () => {
    for (const r of redisClients) r.disconnect();
    await servers?.stop();
  });

  it('store level: a stale epoch cannot commit and leaves Redis unchanged', async () => {
    const prefix = uniquePrefix();
    const keys = new RedisKeys(prefix);
    const a = new RedisShardStore(redis(), keys);
    const b = new RedisShardStore(redis(), keys);
    const check = redis();

    const commitA1: ShardCommit = {
      seq: 5,
      watermark: 100 * MIN + 30_000,
      closedThrough: 99,
      head: Uint8Array.of(1, 2, 3),
      writes: [
        { minute: 99, dim: null, value: null, counts: ['ad-1', 3, 'ad-2', 1] },
        { minute: 99, dim: 'country', value: 'US', counts: ['ad-1', 2] },
      ],
      ops: [{ kind: 'append', part: 'd99', bytes: Uint8Array.of(1, 1, 1, 1, 1, 1, 1, 1) }],
    };
    expect(await a.acquire(0)).toBe(1);
    await a.commit(0, 1, commitA1);
    expect(await check.hgetall(keys.meta(0))).toMatchObject({ seq: '5', epoch: '1', closedThrough: '99' });

    expect(await b.acquire(0)).toBe(2);
    const before = await dump(check, prefix);

    const commitA2: ShardCommit = {
      seq: 9,
      watermark: 101 * MIN + 30_000,
      closedThrough: 100,
      head: Uint8Array.of(9, 9, 9, 9),
      writes: [
        { minute: 99, dim: null, value: null, counts: ['ad-1', 99] },
        { minute: 100, dim: null, value: null, counts: ['ad-3', 7] },
        { minute: 100, dim: 'country', value: 'DE', counts: ['ad-3', 7] },
      ],
      ops: [
        { kind: 'append', part: 'd99', bytes: Uint8Array.of(2, 2, 2, 2, 2, 2, 2, 2) },
        { kind: 'hset', part: 'ha7', fields: ['k', 1] },
        { kind: 'del', part: 'd98' },
      ],
    };
    const err = await a.commit(0, 1, commitA2).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AdaggError);
    expect((err as AdaggError).code).toBe('ADAGG_E_FENCED');
    expect((err as AdaggError).details).toMatchObject({ shard: 0, epoch: 1 });
    // Nothing of A's refused commit reached Redis: meta, snapshot and every count key as before.
    expect(await dump(check, prefix)).toEqual(before);
    expect(await check.exists(keys.counts(0, 100, null, null))).toBe(0);
    // An epoch that was never handed out is refused too.
    await expect(a.commit(0, 3, commitA2)).rejects.toMatchObject({ code: 'ADAGG_E_FENCED' });
    expect(await dump(check, prefix)).toEqual(before);

    // B, the current owner, restores A's committed snapshot and commits.
    const loaded = await b.load(0);
    expect(loaded?.seq).toBe(5);
    expect([...loaded!.head]).toEqual([1, 2, 3]);
    expect((await b.reader(0).logs(['d99']))[0]).toEqual(Uint8Array.of(1, 1, 1, 1, 1, 1, 1, 1));
    await b.commit(0, 2, { ...commitA2, head: Uint8Array.of(4, 5) });
    expect(await check.hgetall(keys.meta(0))).toMatchObject({ seq: '9', epoch: '2', closedThrough: '100' });
    expect(await check.hgetall(keys.counts(0, 99, null, null))).toEqual({ 'ad-1': '99', 'ad-2': '1' });
    expect(await check.hgetall(keys.counts(0, 100, 'country', 'DE'))).toEqual({ 'ad-3': '7' });
    expect([...(await b.load(0))!.head]).toEqual([4, 5]);
    expect((await b.reader(0).logs(['d99']))[0]).toEqual(Uint8Array.of(1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2));
    expect((await b.reader(0).hashes(['ha7']))[0]).toEqual(new Map([['k', '1']]));

    // A still cannot write after B did; B cannot move its sequence backwards.
    await expect(a.commit(0, 1, commitA1)).rejects.toMatchObject({ code: 'ADAGG_E_FENCED' });
    const afterB = await dump(check, prefix);
    await expect(b.commit(0, 2, { ...commitA1, seq: 4 })).rejects.toThrow(/SEQ_REGRESSION/);
    expect(await dump(check, prefix)).toEqual(afterB);

    // Epochs are per shard.
    expect(await a.acquire(1)).toBe(1);
  });

  describe('actor level: a newer owner fences the old one for good', () => {
    const prefix = uniquePrefix();
    const keys = new RedisKeys(prefix);
    const topo = topology(prefix);
    let nodeA: RuntimeNode;
    let nodeB: RuntimeNode | undefined;
    let nc: NatsConnection;
    let producer: ClickProducer;
    let check: Redis;
    const M = Math.floor((Date.now() - 180_000) / MIN);
    /** minute → ad → count, and minute → country → ad → count, of every distinct click published. */
    const truth = new Map<number, Map<string, number>>();
    const truthUS = new Map<number, Map<string, number>>();
    const seen = new Set<string>();
    const restartsA: unknown[] = [];
    /** Every lifecycle state A's shard-0 supervisor enters after its start. */
    const transitionsA: string[] = [];

    const makeClicks = (from: number, n: number): Click[] =>
      Array.from({ length: n }, (_, k) => {
        const i = from + k;
        return { click_id: `fc-${i}`, ad_id: `f-${(i * 7) % 11}`, ts: M * MIN + (i % 110) * 1000, country: i % 3 === 0 ? 'US' : 'DE' };
      });

    const publish = async (clicks: Click[]): Promise<void> => {
      await producer.publish(clicks);
      for (const c of clicks) {
        if (seen.has(c.click_id)) continue;
        seen.add(c.click_id);
        const m = Math.floor(c.ts / MIN);
        for (const [map, ok] of [[truth, true], [truthUS, c.country === 'US']] as const) {
          if (!ok) continue;
          let byAd = map.get(m);
          if (!byAd) map.set(m, (byAd = new Map()));
          byAd.set(c.ad_id, (byAd.get(c.ad_id) ?? 0) + 1);
        }
      }
    };

    const lastSeq = async (): Promise<number> => {
      const jsm = await jetstreamManager(nc);
      return (await jsm.streams.info(topo.clicksStream)).state.last_seq;
    };
    const meta = (): Promise<Record<string, string>> => check.hgetall(keys.meta(0));
    const waitCommitted = async (epoch: number): Promise<void> => {
      const want = await lastSeq();
      await waitFor(`shard 0 committed through ${want} by epoch ${epoch}`, async () => {
        const m = await meta();
        return Number(m.seq ?? 0) >= want && m.epoch === String(epoch);
      });
    };
    const supervisorOf = (node: RuntimeNode): Supervisor => node.supervisor(0)!;

    const opts = (): ReturnType<typeof compileOptions> & { natsUrl: string; redisUrl: string } => ({
      ...compileOptions({ ...TEST_OPTIONS, prefix, shards: 1 }),
      natsUrl: servers.natsUrl,
      redisUrl: servers.redisUrl,
    });

    beforeAll(async () => {
      check = redis();
      nodeA = new RuntimeNode('node-a', opts(), { actors: actorRegistry });
      nodeA.events.on('restart', (e) => restartsA.push(e));
      await nodeA.start([0]);
      supervisorOf(nodeA).lifecycle.onChange((to) => transitionsA.push(to));
      nc = await connect({ servers: servers.natsUrl });
      producer = new ClickProducer(nc, topo, { shards: 1, maxBatch: 100 });
    });
    afterAll(async () => {
      await nodeB?.close();
      await nodeA?.close();
      await nc?.drain().catch(() => undefined);
    });

    it('A commits, B takes over from its snapshot, A is fenced and stops for good, counts stay exact', async () => {
      // Phase 1: node A alone.
      await publish(makeClicks(0, 300));
      await waitCommitted(1);
      expect(nodeA.hosts.get(0)!.epoch).toBe(1);
      const metaA = await meta();
      expect(metaA.epoch).toBe('1');

      // Phase 2: node B starts on shard 0 with a newer epoch and restores A's snapshot.
      nodeB = new RuntimeNode('node-b', opts(), { actors: actorRegistry });
      await nodeB.start([0]);
      await waitFor('B acquired shard 0', () => nodeB!.hosts.get(0)!.epoch === 2);
      expect(await check.get(keys.epoch(0))).toBe('2');
      expect(supervisorOf(nodeA).lifecycle.state).toBe('running');

      // More clicks, plus 60 of phase 1's click_ids re-sent in other batches (must not count again).
      const resent = makeClicks(100, 60);
      await publish([...makeClicks(300, 100), ...resent.slice(0, 30)]);
      await publish([...resent.slice(30), ...makeClicks(400, 100)]);

      // A applies them too, tries to commit with epoch 1, is refused, and its supervisor gives up.
      await waitFor('A fenced', () => supervisorOf(nodeA).lifecycle.state === 'failed', { timeoutMs: 20_000, everyMs: 50 });
      await waitCommitted(2);

      // B keeps owning the shard; A is not restarted and never writes again. Nothing to watch for a
      // while: the supervisor decides at the failure, announcing a restart ('restart' event) in the
      // same step as the 'failed' transition, so an empty `restartsA` once A is failed proves none
      // is scheduled; and A's lifecycle never left 'failed' (a restart passes through 'starting').
      await publish(makeClicks(500, 50));
      await waitCommitted(2);
      expect(supervisorOf(nodeA).lifecycle.state).toBe('failed');
      expect(transitionsA.at(-1)).toBe('failed');
      expect(transitionsA).not.toContain('starting');
      expect(restartsA).toEqual([]);
      await expect(nodeA.hosts.get(0)!.ask({ type: 'status' })).rejects.toMatchObject({ code: 'ADAGG_E_SHARD_UNAVAILABLE' });
      expect(supervisorOf(nodeB).lifecycle.state).toBe('running');
      const m = await meta();
      expect(m.epoch).toBe('2');
      expect(Number(m.seq)).toBe(await lastSeq());
      expect(await check.get(keys.epoch(0))).toBe('2');

      // Final counts in Redis are exact: every distinct click once, per ad and per country.
      await waitFor('minutes closed', async () => Number((await meta()).closedThrough) >= M + 1);
      await waitCommitted(2);
      const minutes = [...truth.keys()].sort();
      expect(minutes).toEqual([M, M + 1]);
      for (const min of minutes) {
        const stored = await check.hgetall(keys.counts(0, min, null, null));
        expect(stored, `minute ${min}`).toEqual(Object.fromEntries([...truth.get(min)!].map(([ad, n]) => [ad, String(n)])));
        const us = await check.hgetall(keys.counts(0, min, 'country', 'US'));
        expect(us, `minute ${min} US`).toEqual(Object.fromEntries([...truthUS.get(min)!].map(([ad, n]) => [ad, String(n)])));
      }
      const total = [...truth.values()].reduce((s, byAd) => s + [...byAd.values()].reduce((a, b) => a + b, 0), 0);
      expect(total).toBe(550);
    });

    // Regression: a fenced actor's node used to keep its queue-group subscription on
    // `<prefix>.q.shard.0`, so about half of the shard's queries reached the dead actor and got
    // ADAGG_E_SHARD_UNAVAILABLE. The supervisor's onFatal hook now unserves the shard.
    it('after A is fenced, every query for shard 0 is answered by the live owner B', async () => {
      await waitFor('A fenced', () => supervisorOf(nodeA).lifecycle.state === 'failed', { timeoutMs: 20_000, everyMs: 50 });
      const replies = await Promise.all(
        Array.from({ length: 20 }, () =>
          nc.request(topo.querySubject(0), JSON.stringify({ op: 'status' }), { timeout: 2000 }).then((r) => r.json<{ ok: boolean; code?: string; result?: { node: string } }>()),
        ),
      );
      expect(replies.map((r) => (r.ok ? r.result!.node : r.code))).toEqual(Array(20).fill('node-b'));
    });
  });
});
