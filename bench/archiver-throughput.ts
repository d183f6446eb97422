// Archiver throughput (issue 10): N clicks (200 a message) on one shard subject; (1) the DuckDB buffer alone, (2) one archiver end to end
// (ordered consumer, decode, append, flush at 1M rows: Parquet zstd + fsync, fenced Redis step, renames). Run: N=2000000 node --import tsx bench/archiver-throughput.ts
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstream } from '@nats-io/jetstream';
import { Redis } from 'ioredis';
import { encodeBatch } from '../src/model/batch-codec.ts';
import { ArchiveBuffer, stagingDir } from '../src/runtime/archive/archive-buffer.ts';
import { decodeBatch } from '../src/model/batch-codec.ts';
import { Archiver } from '../src/runtime/archive/archiver.ts';
import { systemClock } from '../src/runtime/clock.ts';
import { RuntimeEvents } from '../src/runtime/events.ts';
import { startNatsServer, startRedisServer } from '../src/runtime/local-servers.ts';
import { silentLogger } from '../src/runtime/logger.ts';
import { connectNats } from '../src/runtime/nats.ts';
import { RedisKeys } from '../src/runtime/redis-keys.ts';
import { ensureStreams } from '../src/runtime/streams.ts';
import { topology } from '../src/runtime/topology.ts';

const N = Number(process.env.N ?? 2_000_000);
const PER = 200;
const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-archive-bench-'));
const nats = await startNatsServer({ storeDir: path.join(dir, 'nats') });
const rs = await startRedisServer({ dir: path.join(dir, 'redis') });
const nc = await connectNats(nats.url, 'bench');
const redis = new Redis(rs.url);
const topo = topology('bench');
await ensureStreams(nc, topo, { shards: 1, replicas: 1, rawRetentionMs: 3600_000, duplicateWindowMs: 60_000 });
const js = jetstream(nc);
const t = Date.now();
const msgs: Uint8Array[] = [];
for (let m = 0; m < N / PER; m++) {
  const clicks = [];
  for (let i = 0; i < PER; i++) { const k = m * PER + i; clicks.push({ click_id: `click-${k}-abcdef`, ad_id: `ad${k % 100000}`, ts: t - (k % 3600_000), user_id: `u${k % 50000}`, ip: `10.0.${k % 256}.${k % 200}`, country: 'US' }); }
  msgs.push(encodeBatch(clicks));
}
for (let i = 0; i < msgs.length; i += 500) await Promise.all(msgs.slice(i, i + 500).map((d) => js.publish(topo.clickSubject(0), d)));
console.log(`published ${N} clicks`);

// 1. buffer alone: decode + append + stage (COPY to zstd parquet + fsync)
{
  const b = await ArchiveBuffer.open('s0', 'a-bench');
  const t0 = performance.now();
  for (let i = 0; i < msgs.length; i++) b.appendClicks('bench.clicks.0', i + 1, decodeBatch(msgs[i]!));
  const t1 = performance.now();
  const files = await b.stage(path.join(dir, 'a1'), stagingDir(path.join(dir, 'a1'), 'a-bench'), 1, msgs.length, 1);
  const t2 = performance.now();
  console.log(`buffer: decode+append ${(N / ((t1 - t0) / 1000)).toFixed(0)} clicks/s, stage ${files.length} files ${((t2 - t1) / 1000).toFixed(2)} s; overall ${(N / ((t2 - t0) / 1000)).toFixed(0)} clicks/s`);
  await b.close();
}
// 2. end to end: one archiver (consume + decode + append + flush every 1M + commit + rename)
{
  const keys = new RedisKeys('bench');
  const a = new Archiver({ unit: 's0', stream: topo.clicksStream, filter: topo.clickSubject(0) }, { nc, redis, keys, clock: systemClock, log: silentLogger, events: new RuntimeEvents(), root: path.join(dir, 'a2'), flushMs: 300_000, fileClicks: 1_000_000 });
  const ac = new AbortController();
  const t0 = performance.now();
  const run = a.run(ac.signal);
  const last = msgs.length;
  while (Number((await redis.hget(keys.archive('a-s0'), 'seq')) ?? 0) < last - (last % 5000)) {
    if (Number((await redis.hget(keys.archive('a-s0'), 'clicks')) ?? 0) >= N - (N % 1_000_000)) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  ac.abort();
  await run;
  const t1 = performance.now();
  const h = await redis.hgetall(keys.archive('a-s0'));
  console.log(`archiver end to end: ${h.clicks} clicks, ${h.files} files in ${((t1 - t0) / 1000).toFixed(2)} s = ${(Number(h.clicks) / ((t1 - t0) / 1000)).toFixed(0)} clicks/s`);
}
redis.disconnect();
await nc.close();
await nats.stop();
await rs.stop();
await rm(dir, { recursive: true, force: true });
