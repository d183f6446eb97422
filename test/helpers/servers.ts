/** Per-test real nats-server + redis-server in a fresh temp dir (never the shared 4222/6379). */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startNatsServer, startRedisServer, type ServerHandle } from '../../src/runtime/local-servers.ts';
// Side effect: ADAGG_ARCHIVE_DIR of this test process and its children is a temp folder.
import './archive-dir.ts';

export interface TestServers {
  natsUrl: string;
  redisUrl: string;
  nats: ServerHandle;
  redis: ServerHandle;
  /** Temp dir holding the nats store (`nats/`) and redis dir (`redis/`). */
  dir: string;
  /** Stops both servers and removes the temp dir. */
  stop(): Promise<void>;
}

/** Starts both servers on free ports with data in a new `adagg-test-*` temp dir. */
export async function startTestServers(): Promise<TestServers> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-test-'));
  const [nats, redis] = await Promise.allSettled([
    startNatsServer({ storeDir: path.join(dir, 'nats') }),
    startRedisServer({ dir: path.join(dir, 'redis') }),
  ]);
  if (nats.status === 'rejected' || redis.status === 'rejected') {
    // Don't leak the one that did start.
    if (nats.status === 'fulfilled') await nats.value.stop();
    if (redis.status === 'fulfilled') await redis.value.stop();
    await rm(dir, { recursive: true, force: true });
    throw nats.status === 'rejected' ? nats.reason : (redis as PromiseRejectedResult).reason;
  }
  return {
    natsUrl: nats.value.url,
    redisUrl: redis.value.url,
    nats: nats.value,
    redis: redis.value,
    dir,
    stop: async () => {
      await Promise.all([nats.value.stop(), redis.value.stop()]);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A name prefix unique per call, for streams, subjects and keys (starts with a letter). */
export function uniquePrefix(): string {
  return 't' + Math.random().toString(36).slice(2, 10) + Date.now().toString(36).slice(-4);
}
