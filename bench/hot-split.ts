/**
 * Hot-ad split benchmark (not part of `npm test`):
 *
 *   node --import tsx bench/hot-split.ts [--events 1000000] [--nodes 1,2,3] [--children 3] [--out bench/results/hot-split.md]
 *
 * A stream where one ad takes 80% of the traffic (the rest spread over 1,000 ads) is published as
 * fast as the producer can into a cluster of 1, 2 or 3 `adagg node` processes (4 shards), once with
 * the hot ad counted by its shard alone (split off) and once split into K children before the load
 * starts (split on; the producer follows the hot routes). Reported per run: the publish rate, the
 * sustained rate (events / time until every event is counted: the hot ad's count at its shard
 * equals the distinct clicks sent and no actor has a backlog), and the hot shard's consumer lag
 * (messages of its subject not yet applied) sampled every 250 ms: its maximum and its value when
 * publishing ended. Own nats-server and redis-server on free ports; never 4222/6379.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { jetstream } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import { QueryService } from '../src/gateway/query-service.ts';
import type { Click } from '../src/model/click.ts';
import { encodeControl } from '../src/model/hot-messages.ts';
import { shardOf } from '../src/model/partition.ts';
import { MINUTE_MS } from '../src/model/time.ts';
import { HotRoutes } from '../src/runtime/hot/hot-routes.ts';
import { startNatsServer, startRedisServer } from '../src/runtime/local-servers.ts';
import { connectNats } from '../src/runtime/nats.ts';
import { PlacementStore } from '../src/runtime/placement/placement-store.ts';
import { ClickProducer } from '../src/runtime/producer.ts';
import type { ShardStatusReply } from '../src/runtime/query-protocol.ts';
import { RedisKeys } from '../src/runtime/redis-keys.ts';
import { ShardClient } from '../src/runtime/shard-client.ts';
import { ensureStreams } from '../src/runtime/streams.ts';
import { topology } from '../src/runtime/topology.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const SHARDS = 4;
const HOT = 'ad-hot';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const { values } = parseArgs({
  options: {
    events: { type: 'string', default: '1000000' },
    nodes: { type: 'string', default: '1,2,3' },
    children: { type: 'string', default: '3' },
    out: { type: 'string', default: path.join(ROOT, 'bench/results/hot-split.md') },
  },
});
const EVENTS = Number(values.events);
const NODE_COUNTS = values.nodes.split(',').map(Number);
const K = Number(values.children);
const BATCH = 5000;
const IN_FLIGHT = 64;

interface RunResult {
  nodes: number;
  split: boolean;
  events: number;
  distinctHot: number;
  publishSecs: number;
  publishRate: number;
  doneSecs: number;
  countedSecs: number;
  sustainedRate: number;
  hotShardMaxLag: number;
  hotShardLagAtPublishEnd: number;
  childMaxLag: number | null;
  placement: string;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-hotbench-'));
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats'), logFile: path.join(dir, 'nats.log') });
  const redisSrv = await startRedisServer({ dir: path.join(dir, 'redis'), logFile: path.join(dir, 'redis.log') });
  const results: RunResult[] = [];
  try {
    // Warm-up (discarded): nats-server's file store and page cache, so the first row is not a cold start.
    await run(nats.url, redisSrv.url, 1, false, Math.min(EVENTS, 500_000));
    for (const n of NODE_COUNTS) {
      for (const split of [false, true]) {
        const r = await run(nats.url, redisSrv.url, n, split);
        results.push(r);
        console.log(JSON.stringify(r));
      }
    }
  } finally {
    await Promise.all([nats.stop(), redisSrv.stop()]);
    await rm(dir, { recursive: true, force: true });
  }
  await writeFile(values.out, report(results));
  console.log(`wrote ${values.out}`);
}

async function run(natsUrl: string, redisUrl: string, nodeCount: number, split: boolean, events = EVENTS): Promise<RunResult> {
  const prefix = `hb${nodeCount}${split ? 's' : 'n'}${Date.now().toString(36).slice(-5)}`;
  const topo = topology(prefix);
  const env: Record<string, string> = {
    ...(process.env as Record<string, string>),
    NATS_URL: natsUrl,
    REDIS_URL: redisUrl,
    ADAGG_PREFIX: prefix,
    ADAGG_SHARDS: String(SHARDS),
    ADAGG_MIN_NODES: String(nodeCount),
    // Several nodes on one host: no per-node /metrics listener.
    ADAGG_METRICS_PORT: '0',
    ADAGG_JOIN_GRACE_MS: '0',
    ADAGG_HEARTBEAT_INTERVAL_MS: '300',
    ADAGG_NODE_TIMEOUT_MS: '3000',
    ADAGG_HOT_CHILDREN: '0', // the split is forced below (or not at all)
    ADAGG_LOG_LEVEL: 'warn',
  };
  const nc = await connectNats(natsUrl, 'hot-bench');
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: 3 });
  await ensureStreams(nc, topo, { shards: SHARDS, replicas: 1, rawRetentionMs: 3600_000, duplicateWindowMs: 120_000 });
  const placement = new PlacementStore(redis, new RedisKeys(prefix), { shards: SHARDS, heartbeatTimeoutMs: 3000 });
  const procs: ChildProcess[] = [];
  for (let i = 1; i <= nodeCount; i++) {
    const p = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'node', '--id', `n${i}`], { cwd: ROOT, env, stdio: ['ignore', 'ignore', 'inherit'] });
    procs.push(p);
  }
  const client = new ShardClient(nc, topo, 3000, 2);
  const queries = new QueryService(nc, redis, topo, new RedisKeys(prefix), { shards: SHARDS, queryTimeoutMs: 3000 });
  const routes = await (await HotRoutes.open(nc, topo)).watch();
  try {
    await until('every shard running', async () => {
      const [t, nodes] = await Promise.all([placement.read(), placement.nodes(Date.now())]);
      return t.entries.every((e) => e.owner !== null && nodes.find((x) => x.id === e.owner)?.shards[String(e.shard)] !== undefined);
    }, 60_000);
    const hotShard = shardOf(HOT, SHARDS);
    let units: string[] = [];
    let where = '';
    if (split) {
      await jetstream(nc).publish(topo.clickSubject(hotShard), encodeControl({ kind: 'split', ad: HOT, children: K, by: 'bench' }));
      await until('children running', async () => {
        const [us, nodes] = await Promise.all([placement.readUnits(), placement.nodes(Date.now())]);
        units = us.map((u) => u.unit);
        where = us.map((u) => `#${u.k}@${u.owner}`).join(' ');
        return us.length === K && us.every((u) => u.owner !== null && nodes.find((x) => x.id === u.owner)?.shards[u.unit] !== undefined);
      }, 30_000);
      await until('route visible', async () => routes.route(HOT) !== undefined, 10_000);
    }
    const table = await placement.read();
    where = `parent@${table.entries[hotShard]!.owner}${where ? ` children ${where}` : ''}`;

    // Lag sampling: the hot shard (and children) every 250 ms.
    let sampling = true;
    let hotMax = 0;
    let childMax = 0;
    let lastHotLag = 0;
    const sampler = (async () => {
      while (sampling) {
        const st = await client.ask<ShardStatusReply>(hotShard, { op: 'status' }, 1).catch(() => null);
        if (st && st.lag >= 0) {
          lastHotLag = st.lag;
          hotMax = Math.max(hotMax, st.lag);
        }
        for (const u of units) {
          const cs = await unitStatus(nc, topo.querySubject(u));
          if (cs && cs.lag >= 0) childMax = Math.max(childMax, cs.lag);
        }
        await sleep(250);
      }
    })();

    // The stream: 80% hot ad, unique click ids, event time = now. Encoded up front exactly as the
    // producer would (same routing, batching and message ids), so the publisher is not what is measured.
    let seed = nodeCount * 7 + (split ? 1 : 0);
    const rand = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
    const countries = ['US', 'DE', 'FR', 'GB', 'JP'];
    const msgs: Array<{ subject: string; data: Uint8Array; msgID: string }> = [];
    const capture = new ClickProducer(nc, topo, { shards: SHARDS, hotRoutes: routes });
    capture.send = async (subject, data, msgID) => {
      msgs.push({ subject, data, msgID });
      return { stream: '', seq: 0, duplicate: false } as never;
    };
    let hotSent = 0;
    const now = Date.now();
    const firstMinute = Math.floor(now / MINUTE_MS);
    for (let sent = 0; sent < events; ) {
      const out: Click[] = [];
      for (let i = 0; i < BATCH && sent < events; i++, sent++) {
        const hot = rand() < 0.8;
        if (hot) hotSent++;
        out.push({ click_id: `${prefix}-${sent}`, ad_id: hot ? HOT : `ad-${Math.floor(rand() * 1000)}`, ts: now, country: countries[sent % 5]! });
      }
      await capture.publish(out);
    }
    const js = jetstream(nc);
    const t0 = Date.now();
    let i = 0;
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        while (i < msgs.length) {
          const m = msgs[i++]!;
          await js.publish(m.subject, m.data, { msgID: m.msgID, timeout: 30_000 });
        }
      }),
    );
    const publishSecs = (Date.now() - t0) / 1000;
    const lagAtEnd = lastHotLag;

    // Consumed: no actor (shard or child) has a backlog. Counted: the hot ad's count at its shard,
    // the children's reported partials included, equals the clicks sent.
    await until('every event consumed', async () => {
      for (let s = 0; s < SHARDS; s++) {
        const st = await client.ask<ShardStatusReply>(s, { op: 'status' }, 1).catch(() => null);
        if (!st || st.lag !== 0) return false;
      }
      for (const u of units) {
        const st = await unitStatus(nc, topo.querySubject(u));
        if (!st || st.lag !== 0) return false;
      }
      return true;
    }, 600_000, 50);
    const doneSecs = (Date.now() - t0) / 1000;
    await until('every event counted', async () => {
      const c = await queries.adCount(HOT, firstMinute, Math.floor(Date.now() / MINUTE_MS) + 1).catch(() => null);
      return c?.count === hotSent;
    }, 600_000, 50);
    const countedSecs = (Date.now() - t0) / 1000;
    sampling = false;
    await sampler;
    return {
      nodes: nodeCount,
      split,
      events,
      distinctHot: hotSent,
      publishSecs,
      publishRate: Math.round(events / publishSecs),
      doneSecs,
      countedSecs,
      sustainedRate: Math.round(events / doneSecs),
      hotShardMaxLag: hotMax,
      hotShardLagAtPublishEnd: lagAtEnd,
      childMaxLag: split ? childMax : null,
      placement: where,
    };
  } finally {
    routes.close();
    for (const p of procs) p.kill('SIGTERM');
    await Promise.all(procs.map((p) => new Promise<void>((r) => (p.exitCode !== null ? r() : p.once('exit', () => r())))));
    await jetstreamDelete(nc, topo.clicksStream);
    await nc.close();
    redis.disconnect();
  }
}

async function jetstreamDelete(nc: Awaited<ReturnType<typeof connectNats>>, stream: string): Promise<void> {
  const { jetstreamManager } = await import('@nats-io/jetstream');
  await (await jetstreamManager(nc)).streams.delete(stream).catch(() => undefined);
}

/** A hot child's status from its own query subject (children answer like shards). */
async function unitStatus(nc: Awaited<ReturnType<typeof connectNats>>, subject: string): Promise<ShardStatusReply | null> {
  try {
    const msg = await nc.request(subject, JSON.stringify({ op: 'status' }), { timeout: 2000 });
    const r = JSON.parse(msg.string()) as { ok: boolean; result: ShardStatusReply };
    return r.ok ? r.result : null;
  } catch {
    return null;
  }
}

async function until(what: string, cond: () => Promise<boolean>, timeoutMs: number, everyMs = 200): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond().catch(() => false)) return;
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(everyMs);
  }
}

function report(rs: readonly RunResult[]): string {
  const fmt = (n: number): string => n.toLocaleString('en-US');
  const rows = rs.map(
    (r) =>
      `| ${r.nodes} | ${r.split ? `on (K=${K})` : 'off'} | ${fmt(r.publishRate)} | **${fmt(r.sustainedRate)}** | ${r.doneSecs.toFixed(1)} | ${r.countedSecs.toFixed(1)} | ${fmt(r.hotShardMaxLag)} | ${fmt(r.hotShardLagAtPublishEnd)} | ${r.childMaxLag === null ? '-' : fmt(r.childMaxLag)} | ${r.placement} |`,
  );
  return `# Hot-ad split benchmark

\`node --import tsx bench/hot-split.ts --events ${EVENTS} --nodes ${NODE_COUNTS.join(',')} --children ${K}\` (${new Date().toISOString().slice(0, 10)})

${fmt(EVENTS)} events per run, 80% on one ad (the rest over 1,000 ads), event time = publish time,
encoded up front exactly as the producer API does (same routing, up to 500 clicks per JetStream
message, same message ids) and then published as fast as JetStream takes them (${IN_FLIGHT} in flight) into
${SHARDS} shards on 1, 2 or 3 \`adagg node\` processes, so the pipeline is measured, not the publisher. Split
on: the hot ad was split into ${K} children before the load and the producer follows the hot routes,
so the hot ad's clicks go straight to the child subjects. "Sustained" = events / time from the first
publish until every event is consumed (no shard or child actor has a backlog); "counted" = until
the hot ad's count at its shard, the children's reported partials included, equals the clicks
sent (children report with their commits, every ADAGG_SNAPSHOT_INTERVAL_MS = 1 s). Lag = messages of the hot shard's
subject not yet applied by its actor, sampled every 250 ms (max over the run; at the end of
publishing). Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}) shared by
nats-server, redis-server, the producer and every node process.

| nodes | split | publish events/s | sustained events/s | consumed after (s) | counted after (s) | hot shard max lag (msgs) | hot shard lag at publish end | max child lag (msgs) | placement |
| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
${rows.join('\n')}
`;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
