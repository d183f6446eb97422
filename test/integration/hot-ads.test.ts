import { spawn } from 'node:child_process';
import { jetstream } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { actorRegistry } from '../../src/actors/index.ts';
import { GatewayService } from '../../src/gateway/gateway-service.ts';
import { encodeControl, type HotControl } from '../../src/model/hot-messages.ts';
import { shardOf } from '../../src/model/partition.ts';
import { compileOptions, type AdaggOptions, type CompiledOptions } from '../../src/options.ts';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { HotRoutes } from '../../src/runtime/hot/hot-routes.ts';
import { connectNats } from '../../src/runtime/nats.ts';
import { PlacementStore } from '../../src/runtime/placement/placement-store.ts';
import type { UnitEntry } from '../../src/runtime/placement/types.ts';
import { ClickProducer } from '../../src/runtime/producer.ts';
import type { HotSplitStatus } from '../../src/runtime/query-protocol.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { RuntimeNode } from '../../src/runtime/runtime-node.ts';
import { ShardClient } from '../../src/runtime/shard-client.ts';
import { topology, type Topology } from '../../src/runtime/topology.ts';
import { TEST_ARCHIVE_DIR } from '../helpers/archive-dir.ts';
import { realisticStream, Truth, type GenClick } from '../helpers/click-stream.ts';
import { chunked, killAllChildren, LoadClient, ProcCluster, QueryPoller, ROOT } from '../helpers/cluster-procs.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { settledQueryJob } from '../helpers/settle.ts';
import { verifyAdMinutes, verifyTopN, type Mismatch } from '../helpers/verify.ts';
import { pace, waitFor, WaitTimeout } from '../helpers/wait.ts';

/**
 * Hot ads split into child actors, against an independent truth (helpers/click-stream.ts Truth):
 * in-process managed nodes for the split/un-split mechanics, real node processes for SIGKILL.
 */

const HOT = 'ad-0';
const NODES = ['n1', 'n2', 'n3'];

const HOT_OPTIONS: AdaggOptions = {
  shards: 4,
  archiveDir: TEST_ARCHIVE_DIR,
  archive: 'off',
  idleTimeoutMs: 1000,
  allowedLatenessMs: 5000,
  snapshotIntervalMs: 300,
  tickIntervalMs: 100,
  heartbeatIntervalMs: 300,
  nodeTimeoutMs: 3000,
  joinGraceMs: 0,
  minNodes: 3,
  hotChildren: 0, // splits are forced here; the detector has unit tests
  hotLingerMs: 1000,
  httpPort: 0,
  httpHost: '127.0.0.1',
  auth: 'off',
};

type Opts = CompiledOptions & { natsUrl: string; redisUrl: string };

interface InProcCluster {
  opts: Opts;
  topo: Topology;
  nodes: Map<string, RuntimeNode>;
  gateway: GatewayService;
  url: string;
  events: RuntimeEvents;
  nc: NatsConnection;
  redis: Redis;
  placement: PlacementStore;
  client: ShardClient;
  close(): Promise<void>;
}

/** The realistic mix with one very hot ad (80% of the clicks on ad-0) over few ads and recent minutes. */
function makeStream(seed: number, events: number, spanMin = 5) {
  return realisticStream({
    seed,
    events,
    ads: 60,
    hotShare: 0.8,
    startAgoMs: spanMin * 60_000,
    endAgoMs: 40_000,
    maxLateMs: 90_000,
    dupFraction: 0.03,
    malformedFraction: 0,
  });
}

function lastMinuteOf(truth: Truth): number {
  return truth.minutes().at(-1)!;
}

/** Polls the exact comparison until it holds (minutes close once every child closed them). */
async function expectExact(url: string, truth: Truth, timeoutMs = 40_000): Promise<void> {
  const last = lastMinuteOf(truth);
  let mismatches: Mismatch[] = [];
  const exact = async (): Promise<boolean> => {
    mismatches = await verifyAdMinutes(url, truth, { adsForCountry: [HOT, 'ad-1'], countries: ['US', 'DE'] });
    if (mismatches.length > 0) return false;
    mismatches = await verifyTopN(url, truth, [
      { n: 10, window: 6, toMinute: last + 1 },
      { n: 5, window: 2, toMinute: last + 1, country: 'FR' },
    ]);
    return mismatches.length === 0;
  };
  await waitFor('exact counts', exact, { timeoutMs, everyMs: 500 }).catch((err: unknown) => {
    if (!(err instanceof WaitTimeout)) throw err; // on a timeout, the assertion below shows the mismatches left
  });
  expect(mismatches.slice(0, 8)).toEqual([]);
}

async function startInProc(servers: TestServers, extra: AdaggOptions = {}): Promise<InProcCluster> {
  const opts: Opts = { ...compileOptions({ ...HOT_OPTIONS, prefix: uniquePrefix(), ...extra }), natsUrl: servers.natsUrl, redisUrl: servers.redisUrl };
  const events = new RuntimeEvents();
  const nodes = new Map<string, RuntimeNode>();
  for (const id of NODES) {
    const n = new RuntimeNode(id, opts, { actors: actorRegistry, events });
    nodes.set(id, n);
  }
  await Promise.all([...nodes.values()].map((n) => n.startManaged()));
  await waitFor('every shard running', () => [...nodes.values()].reduce((a, n) => a + n.running().size, 0) === opts.shards, { timeoutMs: 20_000, everyMs: 50 });
  const gateway = new GatewayService(opts, { actors: actorRegistry, events });
  const { url } = await gateway.start();
  const topo = topology(opts.prefix);
  const nc = await connectNats(opts.natsUrl, 'hot-test');
  const redis = new Redis(opts.redisUrl, { maxRetriesPerRequest: 3 });
  const placement = new PlacementStore(redis, new RedisKeys(opts.prefix), { shards: opts.shards, heartbeatTimeoutMs: opts.nodeTimeoutMs });
  return {
    opts,
    topo,
    nodes,
    gateway,
    url,
    events,
    nc,
    redis,
    placement,
    client: new ShardClient(nc, topo, 2000, 4),
    close: async () => {
      await gateway.close();
      await Promise.all([...nodes.values()].map((n) => n.close()));
      await nc.close();
      redis.disconnect();
    },
  };
}

async function publishControl(nc: NatsConnection, topo: Topology, shards: number, msg: HotControl): Promise<void> {
  await jetstream(nc).publish(topo.clickSubject(shardOf(msg.ad, shards)), encodeControl(msg));
}

async function hotStatus(c: { client: ShardClient; opts: { shards: number } }, ad = HOT): Promise<HotSplitStatus | null> {
  const all = await c.client.ask<HotSplitStatus[]>(shardOf(ad, c.opts.shards), { op: 'hot-status' });
  return all.find((s) => s.ad === ad) ?? null;
}

/** Waits until the split's children are placed and running, and returns them. */
async function waitChildren(placement: PlacementStore, running: () => Set<string>, k: number, timeoutMs = 20_000): Promise<UnitEntry[]> {
  let units: UnitEntry[] = [];
  await waitFor(`${k} hot children running`, async () => {
    units = (await placement.readUnits()).filter((u) => u.ad === HOT);
    return units.length === k && units.every((u) => u.owner !== null && running().has(u.unit));
  }, { timeoutMs, everyMs: 100 });
  return units;
}

/** Posts NDJSON lines to the gateway in chunks (retrying like a client). */
async function post(url: string, lines: readonly string[], size = 250): Promise<void> {
  const load = new LoadClient(() => url, chunked(lines, size)).start();
  await load.done;
}

async function adagg(env: Record<string, string>, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  return { code, stdout, stderr };
}

const lines = (clicks: readonly GenClick[]): string[] => clicks.map((c) => JSON.stringify(c));

/** Submits a query job and polls it until it is done. */
async function runJob(url: string, body: unknown): Promise<any> {
  const res = await fetch(`${url}/v1/queries`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect(res.status).toBe(202);
  const { id } = (await res.json()) as { id: string };
  const job = await settledQueryJob(url, id);
  expect(job.status, JSON.stringify(job.error)).toBe('done');
  return job;
}

describe('hot ads: child actors split one ad\'s load, reduced exactly by the parent', () => {
  let servers: TestServers;
  let cluster: InProcCluster | undefined;
  let procs: ProcCluster | undefined;

  beforeAll(async () => {
    servers = await startTestServers();
  });
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
    await procs?.close();
    procs = undefined;
    await killAllChildren();
  });
  afterAll(async () => {
    await killAllChildren();
    await servers?.stop();
  });

  it('an ad with 80% of the traffic split into 3 children on 3 nodes: exact counts, duplicates before and after the split', async () => {
    const c = (cluster = await startInProc(servers));
    const stream = makeStream(21, 9000);
    const truth = new Truth().add(stream.clicks);
    const phase1 = stream.clicks.slice(0, 3000);
    const phase2 = stream.clicks.slice(3000, 6000);
    const phase3 = stream.clicks.slice(6000);
    await post(c.url, lines(phase1));

    await publishControl(c.nc, c.topo, c.opts.shards, { kind: 'split', ad: HOT, children: 3, by: 'test' });
    await waitFor('the parent applied the split', async () => (await hotStatus(c))?.state === 'split', { timeoutMs: 10_000, everyMs: 100 });
    const allRunning = (): Set<string> => new Set([...c.nodes.values()].flatMap((n) => [...n.runningUnits().keys()]));
    const units = await waitChildren(c.placement, allRunning, 3);
    expect(new Set(units.map((u) => u.owner)).size, 'children on 3 nodes').toBe(3);
    const routes = await (await HotRoutes.open(c.nc, c.topo)).watch();
    await waitFor('the route is published', () => routes.route(HOT) !== undefined, { timeoutMs: 10_000, everyMs: 50 });

    // Duplicates of clicks counted before the split, sent after it, through the gateway (to the
    // children) and through a publisher that does not follow routes (to the parent, which forwards).
    const hotBefore = phase1.filter((x) => x.ad_id === HOT).slice(0, 300);
    const stale = new ClickProducer(c.nc, c.topo, { shards: c.opts.shards });
    await stale.publish(hotBefore.slice(0, 150));
    await post(c.url, [...lines(hotBefore.slice(150)), ...lines(phase2)]);
    // Stale publishers keep sending part of the new traffic to the parent: it forwards it.
    await stale.publish(phase3.slice(0, 1000));
    await post(c.url, lines(phase3.slice(1000)));
    // And duplicates of after-split clicks both ways.
    await stale.publish(phase2.filter((x) => x.ad_id === HOT).slice(0, 200));
    await post(c.url, lines(phase3.filter((x) => x.ad_id === HOT).slice(0, 200)));

    await expectExact(c.url, truth);
    const split = await hotStatus(c);
    expect(split).toMatchObject({ state: 'split', children: 3, buffered: 0 });

    // Metrics: hot ads, children per ad, per-child lag.
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/^adagg_hot_ads 1$/m);
    expect(metrics).toMatch(/^adagg_hot_children\{ad="ad-0"\} 3$/m);
    for (const k of [0, 1, 2]) expect(metrics).toMatch(new RegExp(`^adagg_hot_child_lag_messages\\{ad="ad-0",child="${k}"\\} 0$`, 'm'));

    // adagg placement: the children under their parent, with node and rate.
    const env = { REDIS_URL: c.opts.redisUrl, ADAGG_PREFIX: c.opts.prefix };
    const json = await adagg(env, 'placement', '--json');
    expect(json.code, json.stderr).toBe(0);
    const report = JSON.parse(json.stdout) as { shards: Array<{ shard: number; hotChildren: Array<{ ad: string; k: number; owner: string; eventsPerSec: number | null }> | null }> };
    const parent = report.shards.find((s) => s.shard === shardOf(HOT, c.opts.shards))!;
    expect(parent.hotChildren?.map((x) => [x.ad, x.k]).sort()).toEqual([[HOT, 0], [HOT, 1], [HOT, 2]]);
    expect(new Set(parent.hotChildren!.map((x) => x.owner)).size).toBe(3);
    for (const x of parent.hotChildren!) expect(x.eventsPerSec).toBeTypeOf('number');
    for (const s of report.shards) if (s !== parent) expect(s.hotChildren).toBeNull();
    const text = await adagg(env, 'placement');
    expect(text.stdout).toMatch(/3 \(ad-0\)/);
    expect(text.stdout.split('\n').filter((l) => /^[├└] ad-0#[012]\s+n[123]\s/.test(l))).toHaveLength(3);
    routes.close();

    // Query jobs (raw-stream scans) read the child subjects too: a filter no actor pre-aggregates.
    const distinct = new Map(stream.clicks.map((x) => [x.click_id, x]));
    const users = new Map<string, number>();
    for (const x of distinct.values()) if (x.ad_id === HOT) users.set(x.user_id, (users.get(x.user_id) ?? 0) + 1);
    const user = [...users].sort((a, b) => b[1] - a[1])[0]![0];
    const mins = truth.minutes();
    const from = mins[0]! * 60_000;
    const to = (mins.at(-1)! + 1) * 60_000;
    const job = await runJob(c.url, { kind: 'aggregated_count', ad_id: HOT, from, to, filter: { user_id: user } });
    expect(job.result.count).toBe(users.get(user));
    const top = await runJob(c.url, { kind: 'popular_ads', count: 3, from, to, filter: { user_id: user } });
    const want = new Map<string, number>();
    for (const x of distinct.values()) if (x.user_id === user) want.set(x.ad_id, (want.get(x.ad_id) ?? 0) + 1);
    expect(top.result.ads[0]).toEqual({ ad_id: HOT, count: want.get(HOT) });
  }, 90_000);

  it('adagg split and unsplit while clicks flow: exact counts, duplicates across both, children drained and removed', async () => {
    const c = (cluster = await startInProc(servers));
    const stream = makeStream(22, 12_000);
    const truth = new Truth().add(stream.clicks);
    const env = { NATS_URL: c.opts.natsUrl, ADAGG_PREFIX: c.opts.prefix };
    const chunks = chunked(lines(stream.clicks), 200);
    const load = new LoadClient(() => c.url, chunks, 120).start();
    // A publisher that never follows routes, sending copies of the hot ad's clicks all along.
    const stale = new ClickProducer(c.nc, c.topo, { shards: c.opts.shards });
    const hotClicks = stream.clicks.filter((x) => x.ad_id === HOT);
    let staleSent = 0;
    const staleLoop = (async () => {
      while (staleSent < hotClicks.length && load.posted < chunks.length) {
        const upTo = Math.floor((hotClicks.length * load.posted) / chunks.length);
        if (upTo > staleSent) {
          await stale.publish(hotClicks.slice(Math.max(0, upTo - 150), upTo).filter((_, i) => i % 3 === 0));
          staleSent = upTo;
        }
        await pace(150); // the stale publisher's rate
      }
    })();

    await load.reach(Math.floor(chunks.length * 0.2));
    const split = await adagg(env, 'split', HOT, '--children', '2', '--wait', '--json');
    expect(split.code, split.stderr).toBe(0);
    expect(JSON.parse(split.stdout)).toMatchObject({ ad: HOT, action: 'published', split: { state: 'split', children: 2 } });
    const again = await adagg(env, 'split', HOT, '--children', '4');
    expect(again.stdout).toMatch(/already split into 2 children/);
    const allRunning = (): Set<string> => new Set([...c.nodes.values()].flatMap((n) => [...n.runningUnits().keys()]));
    const units = await waitChildren(c.placement, allRunning, 2);

    await load.reach(Math.floor(chunks.length * 0.6));
    const unsplit = await adagg(env, 'unsplit', HOT, '--json');
    expect(unsplit.code, unsplit.stderr).toBe(0);
    // Copies of clicks the children counted, arriving at the parent while it drains them.
    await post(c.url, lines(hotClicks.slice(Math.floor(hotClicks.length * 0.3), Math.floor(hotClicks.length * 0.4))));
    await waitFor('the un-split completed', async () => (await hotStatus(c)) === null, { timeoutMs: 20_000, everyMs: 100 });
    // ... and after it completed.
    await post(c.url, lines(hotClicks.slice(Math.floor(hotClicks.length * 0.4), Math.floor(hotClicks.length * 0.45))));
    await load.done;
    await staleLoop;
    expect(load.errors).toEqual([]);

    await expectExact(c.url, truth);
    // The children stopped and left placement; the route is gone.
    await waitFor('children removed', async () => (await c.placement.readUnits()).length === 0 && allRunning().size === 0, { timeoutMs: 15_000, everyMs: 100 });
    const routes = await HotRoutes.open(c.nc, c.topo);
    expect(await routes.get(HOT)).toBeUndefined();
    for (const u of units) expect(await c.redis.pttl(new RedisKeys(c.opts.prefix).snapshot(u.unit))).toBeGreaterThan(0);
    const none = await adagg(env, 'unsplit', HOT);
    expect(none.stdout).toMatch(/not split; nothing sent/);
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/^adagg_hot_ads 0$/m);
  }, 90_000);

  it('the detector splits an ad that stays hot and un-splits it once it cooled (hysteresis), counts exact', async () => {
    const c = (cluster = await startInProc(servers, {
      hotChildren: 2,
      hotRatePerSec: 400,
      hotSharePct: 60,
      hotMinRatePerSec: 100,
      hotForMs: 1500,
      coolRatePerSec: 50,
      coolSharePct: 10,
      coolForMs: 2000,
    }));
    const stream = makeStream(24, 9000, 3);
    const truth = new Truth().add(stream.clicks);
    const gens: number[] = [];
    c.events.on('hot', (e) => {
      if (e.ad === HOT && e.state === 'split') gens.push(e.gen);
    });
    // ~1,500 clicks/s, 80% on the hot ad, for ~6 s: hot by rate and by share.
    const load = new LoadClient(() => c.url, chunked(lines(stream.clicks), 300), 200).start();
    await waitFor('the detector split the hot ad', async () => (await hotStatus(c))?.state === 'split', { timeoutMs: 20_000, everyMs: 100 });
    await load.done;
    // Traffic stopped: the ad cools, and is un-split (its children drained) on its own.
    await waitFor('the detector un-split the cooled ad', async () => gens.length > 0 && (await hotStatus(c)) === null, { timeoutMs: 30_000 });
    expect(gens).toHaveLength(1);
    await expectExact(c.url, truth);
  }, 90_000);

  it('SIGKILL of a hot child\'s node mid-minute (real processes): the child is restored elsewhere and counts stay exact', async () => {
    const p = (procs = new ProcCluster({
      natsUrl: servers.natsUrl,
      redisUrl: servers.redisUrl,
      prefix: uniquePrefix(),
      shards: 4,
      env: { ADAGG_MIN_NODES: '3', ADAGG_HOT_CHILDREN: '0', ADAGG_HOT_LINGER_MS: '1000' },
    }));
    for (const id of NODES) p.startNode(id);
    await p.startGateway();
    await p.waitSettled(NODES, 45_000);
    const env = { NATS_URL: servers.natsUrl, ADAGG_PREFIX: p.opts.prefix };
    const stream = makeStream(23, 14_000);
    const truth = new Truth().add(stream.clicks);
    const minutes = truth.minutes();
    const chunks = chunked(lines(stream.clicks), 200);
    const load = new LoadClient(() => p.url, chunks, 150).start();
    const poller = new QueryPoller(() => p.url, HOT, minutes[0]! * 60_000, (minutes.at(-1)! + 1) * 60_000, 150).start();

    await load.reach(Math.floor(chunks.length * 0.15));
    const split = await adagg(env, 'split', HOT, '--children', '3', '--wait');
    expect(split.code, split.stderr).toBe(0);
    // Children placed and running: each owner's heartbeat reports its child.
    let units: UnitEntry[] = [];
    await waitFor('3 children running on their owners', async () => {
      units = (await p.placement.readUnits()).filter((u) => u.ad === HOT);
      if (units.length !== 3 || units.some((u) => u.owner === null)) return false;
      const nodes = await p.placement.nodes(Date.now());
      return units.every((u) => nodes.find((n) => n.id === u.owner)?.shards[u.unit] !== undefined);
    }, { timeoutMs: 20_000, everyMs: 100 });
    const parentOwner = (await p.owners()).get(shardOf(HOT, p.shards))!;
    const victimUnit = units.find((u) => u.owner !== parentOwner)!;
    const victim = victimUnit.owner!;

    await load.reach(Math.floor(chunks.length * 0.5));
    const killedAt = Date.now();
    p.node(victim).signal('SIGKILL');
    await p.node(victim).exited;
    await waitFor('the child restored on a live node', async () => {
      const u = (await p.placement.readUnits()).find((x) => x.unit === victimUnit.unit);
      if (!u || u.owner === victim || u.owner === null) return false;
      const nodes = await p.placement.nodes(Date.now());
      return nodes.find((n) => n.id === u.owner)?.shards[u.unit] !== undefined;
    }, { timeoutMs: 20_000, everyMs: 100 });
    const restoredMs = Date.now() - killedAt;
    const moved = (await p.placement.readUnits()).find((x) => x.unit === victimUnit.unit)!;
    expect(moved.epoch).toBeGreaterThan(victimUnit.epoch);
    console.log(`FIGURE hot_child_restore_ms=${restoredMs} (SIGKILL ${victim} holding ${victimUnit.unit}; node timeout 3000 ms)`);

    await load.done;
    expect(load.errors.length).toBeLessThan(50);
    await expectExact(p.url, truth, 45_000);
    await poller.stop();
    expect(poller.violations).toEqual([]);
    expect(poller.reopened).toEqual([]);
  }, 110_000);
});
