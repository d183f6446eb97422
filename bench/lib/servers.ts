/** The bench's own nats-server and redis-server (free ports, temp dir), never the shared 4222/6379. */
import { readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { startNatsServer, startRedisServer, type ServerHandle } from '../../src/runtime/local-servers.ts';
import { connectNats } from '../../src/runtime/nats.ts';

export interface BenchServers {
  natsUrl: string;
  redisUrl: string;
  nats: ServerHandle;
  redis: ServerHandle;
  dir: string;
  nc: NatsConnection;
  /** Client for the bench's own reads (meta polling, exactness checks). */
  rd: Redis;
  /** Where service logs go: $BENCH_LOG_DIR if set (kept), else the temp dir (removed at the end). */
  logDir: string;
  stop(): Promise<void>;
}

export async function startBenchServers(): Promise<BenchServers> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-bench-'));
  const nats = await startNatsServer({ storeDir: path.join(dir, 'nats'), logFile: path.join(dir, 'nats.log') });
  const redis = await startRedisServer({ dir: path.join(dir, 'redis'), logFile: path.join(dir, 'redis.log') }).catch(async (err: unknown) => {
    await nats.stop();
    throw err;
  });
  const nc = await connectNats(nats.url, 'adagg-bench');
  const rd = new Redis(redis.url, { maxRetriesPerRequest: 3 });
  let stopped: Promise<void> | undefined;
  const logDir = process.env.BENCH_LOG_DIR ? path.resolve(process.env.BENCH_LOG_DIR) : dir;
  await mkdir(logDir, { recursive: true });
  return {
    logDir,
    natsUrl: nats.url,
    redisUrl: redis.url,
    nats,
    redis,
    dir,
    nc,
    rd,
    stop: () =>
      (stopped ??= (async () => {
        await nc.close().catch(() => undefined);
        rd.disconnect();
        await Promise.all([nats.stop(), redis.stop()]);
        await rm(dir, { recursive: true, force: true });
      })()),
  };
}

/** Deletes a stream (frees the server's disk and memory between runs); ignores a missing one. */
export async function deleteStream(nc: NatsConnection, name: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(name).catch(() => undefined);
}

export interface Versions {
  node: string;
  natsServer: string;
  redisServer: string;
  natsClient: string;
  os: string;
  cpus: string;
}

export async function versions(s: BenchServers): Promise<Versions> {
  const info = await s.rd.info('server');
  const redisVer = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  const natsVer = s.nc.info?.version ?? 'unknown';
  let natsClient = 'unknown';
  try {
    const file = path.resolve(import.meta.dirname, '../../node_modules/@nats-io/jetstream/package.json');
    natsClient = (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  } catch {
    // leave unknown
  }
  const cpus = os.cpus();
  return {
    node: process.version,
    natsServer: natsVer,
    redisServer: redisVer,
    natsClient,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    cpus: `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown'}`,
  };
}
