/**
 * Issue 11, "What to build" 4 (Redis commands have timeouts) and defect 14's Redis half: a frozen
 * Redis gets a coded 503 within about 2 s instead of a hang; a node whose Redis is gone still closes
 * (the final commit gives up); and commits that timed out (actors restarted) leave every click
 * counted exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.ts';
import { createRedis, type RedisConnectOptions } from '../../src/runtime/redis-connect.ts';
import { freeze } from '../helpers/processes.ts';
import { startSecureNats, startSecureRedis, type SecureServer } from '../helpers/secure-servers.ts';
import { getJson, postClicks } from '../helpers/stack.ts';
import { waitForValue } from '../helpers/wait.ts';
import { CREDENTIALS, ingestAndCount, MINUTE, NATS_USER, REDIS_USER, TransportRig } from './transport-rig.ts';

let rig: TransportRig;
let nats: SecureServer;
let redis: SecureServer;

beforeAll(async () => {
  rig = await TransportRig.create();
  [nats, redis] = await Promise.all([
    rig.keep(startSecureNats({ dir: rig.dir, auth: NATS_USER })),
    rig.keep(startSecureRedis({ dir: rig.dir, users: [REDIS_USER] })),
  ]);
}, 60_000);

afterAll(async () => {
  await rig?.close();
}, 60_000);

describe('Redis command timeouts', () => {
  it('answers a count with 503 ADAGG_E_REDIS_UNAVAILABLE within about 2 s while Redis is frozen', async () => {
    const stack = await rig.stackOn(nats, redis, CREDENTIALS);
    await ingestAndCount(stack, 'ad-frozen', 4);
    const from = Math.floor((Date.now() - 10 * MINUTE) / MINUTE) * MINUTE;
    const query = `${stack.url}/v1/ads/ad-frozen/aggregated_count?from=${from}&to=${from + 8 * MINUTE}`;
    await freeze(redis);
    try {
      const t0 = Date.now();
      const res = await fetch(query, { signal: AbortSignal.timeout(20_000) });
      const ms = Date.now() - t0;
      expect({ status: res.status, body: await res.json() }).toMatchObject({ status: 503, body: { code: ErrorCode.RedisUnavailable } });
      // ADAGG_REDIS_COMMAND_TIMEOUT_MS is 2 s; a slow, shared test machine gets 3 s of headroom.
      expect(ms).toBeLessThan(5000);
    } finally {
      redis.kill('SIGCONT');
    }
    // Thawed, the same query answers again.
    const after = await waitForValue('counts after SIGCONT', () => getJson(query), (r) => r.status === 200, { timeoutMs: 30_000 });
    expect(after.body.count).toBe(4);
  }, 120_000);

  it("closes a node whose Redis is gone: the final commit gives up after ADAGG_REDIS_STATE_TIMEOUT_MS", async () => {
    const own = await rig.keep(startSecureRedis({ dir: rig.dir, users: [REDIS_USER] }));
    const stack = await rig.stackOn(nats, own, {
      ...CREDENTIALS,
      redisStateTimeoutMs: 1000,
    });
    await ingestAndCount(stack, 'ad-gone', 2);
    own.kill('SIGKILL');
    await own.exited;
    const t0 = Date.now();
    await stack.gateway.close();
    await stack.node.close(); // used to retry the final commit forever (maxRetriesPerRequest: null)
    expect(Date.now() - t0).toBeLessThan(20_000);
    expect(stack.node.state).toBe('stopped');
  }, 120_000);
});

describe('Redis commit timeouts keep counts exact', () => {
  it("holds a node's reads back while one of its writes is overdue, so they never overtake it", async () => {
    // CLIENT PAUSE WRITE delays writes but serves reads: without the hold, a read sent after the
    // write timed out would see the state before it (what a restarted actor's restore must not).
    const plain = await rig.keep(startSecureRedis({ dir: rig.dir }));
    const o: RedisConnectOptions = { redisUrl: plain.url, redisStateTimeoutMs: 300 };
    const [writer, reader, admin] = [createRedis(o, 'state'), createRedis(o, 'state'), createRedis({ redisUrl: plain.url }, 'gateway')];
    try {
      await Promise.all([writer.ping(), reader.ping()]);
      await admin.call('CLIENT', 'PAUSE', '2000', 'WRITE');
      await expect(writer.set('gate-key', 'written')).rejects.toMatchObject({ code: ErrorCode.RedisUnavailable });
      const seen = await waitForValue(
        'a read that is answered',
        () => reader.get('gate-key').catch((err: { code?: string }) => `failed: ${err.code}`),
        (v) => !v?.startsWith('failed'),
        { timeoutMs: 20_000, everyMs: 50 },
      );
      expect(seen).toBe('written');
    } finally {
      writer.disconnect();
      reader.disconnect();
      admin.disconnect();
    }
  }, 60_000);

  it('counts every click exactly once after commits timed out on a frozen Redis (actors restarted)', async () => {
    const redis = await rig.keep(startSecureRedis({ dir: rig.dir, users: [REDIS_USER] }));
    const nats = await rig.keep(startSecureNats({ dir: rig.dir, auth: NATS_USER }));
    const stack = await rig.stackOn(nats, redis, {
      ...CREDENTIALS,
      redisStateTimeoutMs: 500,
    });
    const restarts: Array<string | undefined> = [];
    stack.node.events.on('restart', (e) => restarts.push(e.code));
    const ts = Date.now() - 3 * MINUTE;
    const ads = ['ad-x0', 'ad-x1', 'ad-x2', 'ad-x3'];
    const truth = new Map<string, Set<string>>(ads.map((a) => [a, new Set()]));
    let seq = 0;
    /** Posts `n` new clicks plus `dups` click ids already posted (the same ad each). */
    const post = async (n: number, dups: number): Promise<void> => {
      const lines: string[] = [];
      for (let i = 0; i < n; i++, seq++) {
        const ad = ads[seq % ads.length]!;
        const id = `x-${seq}`;
        truth.get(ad)!.add(id);
        lines.push(JSON.stringify({ click_id: id, ad_id: ad, ts: ts + (seq % 50_000) }));
      }
      for (let i = 0; i < dups && i < seq; i++) {
        const k = (i * 7) % seq;
        lines.push(JSON.stringify({ click_id: `x-${k}`, ad_id: ads[k % ads.length], ts: ts + (k % 50_000) }));
      }
      expect((await postClicks(stack.url, lines)).status).toBe(200);
    };
    await post(400, 0);
    await freeze(redis);
    try {
      await post(400, 100); // JetStream takes them; the actors' commits cannot finish
      await waitForValue('an actor restarted on a timed-out Redis call', () => restarts, (r) => r.includes(ErrorCode.RedisUnavailable), {
        timeoutMs: 30_000,
      });
    } finally {
      redis.kill('SIGCONT');
    }
    await post(400, 200);
    const from = Math.floor(ts / MINUTE) * MINUTE;
    for (const ad of ads) {
      const want = truth.get(ad)!.size;
      await waitForValue(
        `${ad}: ${want} clicks, final`,
        () => getJson(`${stack.url}/v1/ads/${ad}/aggregated_count?from=${from}&to=${from + 2 * MINUTE}`),
        (r) => r.status === 200 && r.body.count === want && r.body.minutes.every((m: { final: boolean }) => m.final),
        { timeoutMs: 60_000, everyMs: 250 },
      );
    }
  }, 180_000);
});

