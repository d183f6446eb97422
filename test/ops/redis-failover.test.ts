import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { shardOf } from '../../src/model/partition.ts';
import { compileOptions } from '../../src/options.ts';
import { startNatsServer, type ServerHandle } from '../../src/runtime/local-servers.ts';
import { openRedis } from '../../src/runtime/redis-connect.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { RedisShardStore } from '../../src/runtime/redis-shard-store.ts';
import { Truth, type GenClick } from '../helpers/click-stream.ts';
import { caughtUpOnDisk, onlineReplicas, startRedisHa, type RedisHa } from '../helpers/redis-ha.ts';
import { uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { verifyAdMinutes, waitAllClosed } from '../helpers/verify.ts';
import { pace, waitFor } from '../helpers/wait.ts';

const SHARDS = 4;
const ADS = Array.from({ length: 16 }, (_, i) => `ad-${i}`);

/**
 * Redis failover under load (issue 13, Redis HA): a real primary, one (or two) replicas and three Sentinels;
 * the stack reaches Redis only through the Sentinels (REDIS_URL points nowhere) and waits for one
 * replica on every durable write (ADAGG_REDIS_MIN_REPLICAS=1). The primary is SIGKILLed while
 * clicks stream in; the Sentinels promote a replica, the old primary comes back as a replica,
 * commits resume, and every count is exact against the clicks the gateway accepted, with no
 * fencing epoch lower than before the failover. With one replica, commits wait for the old primary
 * to return (the only possible replica); with two, the other replica serves at once.
 */
describe.each([1, 2])('Redis Sentinel failover under load, %i replica(s)', (replicaCount) => {
  let ha: RedisHa;
  let nats: ServerHandle;
  let stack: TestStack;
  const conns: Redis[] = [];

  beforeAll(async () => {
    // down-after 5 s, not 1 s: on a loaded machine a new primary can stall over a second (Redis
    // blocks writes up to 2 s behind a slow AOF fsync), and the Sentinels then fail it over again.
    ha = await startRedisHa({ replicas: replicaCount, downAfterMs: 5000, failoverTimeoutMs: 10_000 });
    nats = await startNatsServer({ storeDir: path.join(ha.dir, 'nats') });
    // Only the fields startStack reads; it does not stop servers it was given.
    const servers = { natsUrl: nats.url, redisUrl: 'redis://127.0.0.1:1', dir: ha.dir } as TestServers;
    stack = await startStack(
      {
        shards: SHARDS,
        redisSentinels: ha.sentinels,
        redisSentinelName: ha.name,
        redisMinReplicas: 1,
        redisWaitTimeoutMs: 1000,
        redisStateTimeoutMs: 5000,
      },
      servers,
    );
  }, 180_000);
  afterAll(async () => {
    conns.forEach((c) => c.disconnect());
    await stack?.close();
    await nats?.stop();
    await ha?.stop();
  }, 60_000);

  /** A wait whose timeout also shows each Redis server's replication state and the tails of every log. */
  const explained = (wait: Promise<void>): Promise<void> =>
    wait.catch(async (err: unknown) => {
      // The logs first and the node's and store's views last: a CI log keeps the tail.
      const logs = await ha.diagnose();
      throw new Error(`${logs}\n${(err as Error).message}\n${nodeView()}\n${await storeView()}`);
    });
  /** The node's side: which shards run here under which epoch, each supervisor's state, lag, restarts. */
  const nodeView = (): string =>
    [...Array(SHARDS).keys()]
      .map((s) => `shard ${s}: running epoch ${stack.node.running().get(s) ?? '-'}, supervisor ${stack.node.supervisor(s)?.lifecycle.state ?? '-'}, lag ${stack.node.hosts.get(s)?.lag ?? '-'}`)
      .concat(nodeEvents.slice(-40))
      .join('\n');
  /** The node's events since the kill (restarts with their error codes, fenced shards, commit failures). */
  const nodeEvents: string[] = [];
  /** Redis' side, through the Sentinels' current primary: epochs, committed positions, the placement table. */
  const storeView = async (): Promise<string> => {
    const r = connect(await ha.primaryPort().catch(() => 1));
    try {
      const keys = new RedisKeys(stack.opts.prefix);
      const rows = await Promise.all([...Array(SHARDS).keys()].map(async (s) => `shard ${s}: epoch ${await r.get(keys.epoch(s))}, meta ${JSON.stringify(await r.hgetall(keys.meta(s)))}`));
      return [...rows, `placement ${JSON.stringify(await r.hgetall(`${keys.prefix}:placement`))}`].join('\n');
    } catch (e) {
      return `store unreadable: ${(e as Error).message}`;
    } finally {
      r.disconnect();
    }
  };

  const connect = (port: number): Redis => {
    const r = ha.connect(port);
    r.on('error', () => undefined);
    conns.push(r);
    return r;
  };

  it('keeps counts exact and epochs monotonic when the primary is SIGKILLed mid-stream', async () => {
    const keys = new RedisKeys(stack.opts.prefix);
    expect(new Set(ADS.map((a) => shardOf(a, SHARDS))).size).toBe(SHARDS); // load on every shard

    // The load: batches of fresh clicks, now and then a copy of an earlier one (a retry); a failed
    // POST is retried with the same body until accepted, as a client does. Truth: what was accepted.
    const truth = new Truth();
    const sent: GenClick[] = [];
    let running = true;
    let n = 0;
    let posts = 0;
    let retries = 0;
    const load = (async () => {
      while (running) {
        const batch: GenClick[] = [];
        for (let i = 0; i < 40; i++) {
          const old = sent.length > 0 && i % 10 === 0 ? sent[(n * 7919) % sent.length] : undefined;
          const ad = ADS[n % ADS.length]!;
          const click = old ?? { click_id: `c-${n}`, ad_id: ad, ts: Date.now(), user_id: `u-${n % 50}`, ip: '10.0.0.1', country: n % 3 === 0 ? 'US' : 'DE' };
          batch.push(click);
          if (!old) sent.push(click);
          n++;
        }
        for (;;) {
          const ok = await fetch(`${stack.url}/v1/clicks`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body: batch.map((c) => JSON.stringify(c)).join('\n') })
            .then((r) => r.status === 200)
            .catch(() => false);
          if (ok) break;
          retries++;
          await pace(100); // retry backoff
        }
        posts++;
        truth.add(batch);
        await pace(50); // the load's rate
      }
    })();

    const oldPort = await ha.primaryPort();
    const primary = connect(oldPort);
    const metaOf = async (r: Redis, s: number) => r.hgetall(keys.meta(s));
    await waitFor('every shard committed under load', async () => (await Promise.all([0, 1, 2, 3].map((s) => metaOf(primary, s)))).every((m) => Number(m.seq ?? 0) > 0), {
      timeoutMs: 60_000,
      everyMs: 200,
    });
    await pace(2000); // a little more steady load before the kill
    const epochsBefore = await Promise.all([0, 1, 2, 3].map(async (s) => Number(await primary.get(keys.epoch(s)))));
    const tableBefore = await primary.hgetall(`${keys.prefix}:placement`);
    // A commit event is emitted once the store acknowledged it: after WAIT saw the replica.
    const firstAck = new Map<number, number>(); // shard → when its first commit after the kill was acknowledged
    const ackedSeq = new Map<number, number>(); // shard → the stream sequence of that commit
    let tKill = Number.POSITIVE_INFINITY;
    let commitFailures = 0;
    let restarts = 0;
    stack.node.events.on('commit', (e) => {
      const now = Date.now();
      if (typeof e.shard === 'number' && now > tKill && !firstAck.has(e.shard)) {
        firstAck.set(e.shard, now);
        ackedSeq.set(e.shard, e.seq);
      }
    });
    stack.node.events.on('commitFailed', (e) => {
      commitFailures++;
      nodeEvents.push(`${new Date().toISOString()} commitFailed ${JSON.stringify(e)}`);
    });
    stack.node.events.on('restart', (e) => {
      restarts++;
      nodeEvents.push(`${new Date().toISOString()} restart ${JSON.stringify(e)}`);
    });
    stack.node.events.on('fenced', (e) => nodeEvents.push(`${new Date().toISOString()} fenced ${JSON.stringify(e)}`));

    // SIGKILL the primary; the Sentinels promote the replica; a supervisor restarts the old one,
    // which the Sentinels turn into the new primary's replica (MIN_REPLICAS=1 needs one).
    tKill = Date.now();
    ha.kill(oldPort, 'SIGKILL');
    primary.disconnect();
    const newPort = await ha.waitForNewPrimary(oldPort, 90_000);
    const tPromoted = Date.now();
    await ha.exited(oldPort);
    await ha.restart(oldPort);
    // The primary as the Sentinels name it now: a stall of the promoted one can cause a second
    // failover (to the other replica, or back to the returned old primary), which is allowed.
    const current = async (): Promise<Redis> => connect(await ha.primaryPort());
    await explained(waitFor('every shard committing again (acknowledged)', () => firstAck.size === SHARDS, { timeoutMs: 120_000, everyMs: 50 }));
    const fresh = await current();
    const tRecovered = Math.max(...firstAck.values());
    const tFirstAck = Math.min(...firstAck.values());
    // The commits acknowledged after the kill are on the primary (its committed sequence is at
    // least theirs; a commit's own timestamp is taken before it is sent, so it may predate the kill).
    for (const s of [0, 1, 2, 3]) expect(Number((await metaOf(fresh, s)).seq), `shard ${s}`).toBeGreaterThanOrEqual(ackedSeq.get(s)!);
    await explained(
      waitFor('the old primary back as a replica', async () => (await onlineReplicas(await ha.primaryPort().catch(() => newPort))) === replicaCount, { timeoutMs: 90_000, everyMs: 200 }),
    );
    const tReplica = Date.now();
    await pace(3000); // steady load after the recovery
    // Every minute of the load closes (a final-count commit) after the failover: waitAllClosed below.
    running = false;
    await load;

    const minutes = truth.minutes();
    await waitAllClosed(stack.url, minutes[minutes.length - 1]!, 120_000);
    const mismatches = await verifyAdMinutes(stack.url, truth);
    expect(mismatches).toEqual([]);

    const last = await current();
    const epochsAfter = await Promise.all([0, 1, 2, 3].map(async (s) => Number(await last.get(keys.epoch(s)))));
    for (let s = 0; s < SHARDS; s++) expect(epochsAfter[s]!, `shard ${s} epoch`).toBeGreaterThanOrEqual(epochsBefore[s]!);
    const tableAfter = await last.hgetall(`${keys.prefix}:placement`);
    expect(Number(tableAfter.v)).toBeGreaterThanOrEqual(Number(tableBefore.v));
    expect(stack.node.running().size).toBe(SHARDS);

    const total = ADS.reduce((sum, ad) => sum + truth.count(ad, minutes[0]!, minutes[minutes.length - 1]! + 1), 0);
    console.log(
      JSON.stringify({
        redisFailover: {
          replicas: replicaCount,
          promotedAfterMs: tPromoted - tKill,
          replicaBackAfterMs: tReplica - tKill,
          firstShardCommittingAfterMs: tFirstAck - tKill,
          allShardsCommittingAfterMs: tRecovered - tKill,
          commitFailures,
          actorRestarts: restarts,
          posts,
          postRetries: retries,
          clicksSent: n,
          distinctClicks: truth.distinct,
          countedTotal: total,
          minutes: minutes.length,
          epochsBefore,
          epochsAfter,
        },
      }),
    );
  }, 600_000);
});

/**
 * Regression (issue 13, Redis HA): a fencing epoch was granted (INCR) and a commit acknowledged by
 * the primary alone; the same holds for commits as for epochs below. With
 * the replica lagging (here: stopped) a failover then lost it, and the promoted replica would hand
 * the same epoch out again: two owners with one epoch. Now an epoch is granted only once a replica
 * has it, so no epoch a caller was given is missing after the failover. (The replica is killed and
 * restarted from its own AOF, so it really lacks what the primary took meanwhile.)
 */
describe('a granted epoch and an acknowledged commit survive a failover', () => {
  let ha: RedisHa;
  const conns: Redis[] = [];
  beforeAll(async () => {
    ha = await startRedisHa({ replicas: 1, downAfterMs: 1000, failoverTimeoutMs: 5000 });
  }, 120_000);
  afterAll(async () => {
    conns.forEach((c) => c.disconnect());
    await ha?.stop();
  }, 60_000);

  it('never rolls an epoch or a commit back', async () => {
    const o = { ...compileOptions({ redisSentinels: ha.sentinels, redisSentinelName: ha.name, redisMinReplicas: 1, redisWaitTimeoutMs: 500, redisStateTimeoutMs: 3000 }), redisUrl: 'redis://127.0.0.1:1' };
    const redis = await openRedis(o, 'state');
    conns.push(redis);
    const keys = new RedisKeys(uniquePrefix());
    const store = new RedisShardStore(redis, keys);
    const granted = [await store.acquire(0)];
    const commitEpoch = await store.acquire(1);
    const commit = (seq: number) => store.commit(1, commitEpoch, { seq, watermark: 0, closedThrough: 0, head: new Uint8Array([seq]), ops: [], writes: [{ minute: 1, dim: null, value: null, counts: ['ad-1', seq] }] });
    await commit(1);
    const acked = [1];
    const [primaryPort, replicaPort] = ha.dataPorts as [number, number];
    // Only what comes next may be missing on the replica: what it acknowledged is in its AOF file.
    await waitFor('the replica holding all so far on disk', () => caughtUpOnDisk(replicaPort, primaryPort), { timeoutMs: 30_000, everyMs: 50 });
    // The replica is down; an epoch asked for now must not be granted.
    ha.kill(replicaPort, 'SIGKILL');
    await ha.exited(replicaPort);
    const late = await store.acquire(0).then(
      (e) => e,
      (err: unknown) => err,
    );
    if (typeof late === 'number') granted.push(late);
    else expect(late).toMatchObject({ code: 'ADAGG_E_REDIS_UNAVAILABLE' });
    // Nor may a commit made now be acknowledged.
    await commit(2).then(
      () => acked.push(2),
      (err: unknown) => expect(err).toMatchObject({ code: 'ADAGG_E_REDIS_UNAVAILABLE' }),
    );
    // The primary dies, the replica comes back (without what it missed) and is promoted.
    ha.kill(primaryPort, 'SIGKILL');
    await ha.exited(primaryPort);
    await ha.restart(replicaPort);
    const now = await ha.waitForNewPrimary(primaryPort, 90_000);
    expect(now).toBe(replicaPort);
    const fresh = ha.connect(now);
    fresh.on('error', () => undefined);
    conns.push(fresh);
    await waitFor('the promoted replica answering as primary', async () => (await fresh.info('replication').catch(() => '')).includes('role:master'), { timeoutMs: 60_000 });
    expect(Number(await fresh.get(keys.epoch(0)))).toBeGreaterThanOrEqual(Math.max(...granted));
    expect(Number(await fresh.hget(keys.meta(1), 'seq'))).toBeGreaterThanOrEqual(Math.max(...acked));
  }, 300_000);
});
