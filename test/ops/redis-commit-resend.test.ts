import net from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileOptions } from '../../src/options.ts';
import { openRedis } from '../../src/runtime/redis-connect.ts';
import { RedisKeys } from '../../src/runtime/redis-keys.ts';
import { RedisShardStore } from '../../src/runtime/redis-shard-store.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';

/**
 * A TCP proxy in front of Redis that, when armed, swallows the next reply and drops the client's
 * connection: the command ran on the server but the client never heard so. This is what a
 * failover does to a commit that reached the old primary (and its replica) just before it died.
 */
async function startDroppingProxy(target: number): Promise<{ url: string; arm(): void; close(): void }> {
  let armed = false;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port: target });
    sockets.add(client).add(upstream);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => {
      if (!armed) return void client.write(d);
      armed = false;
      client.destroy();
      upstream.destroy();
    });
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `redis://127.0.0.1:${port}`,
    arm: () => (armed = true),
    close: () => {
      sockets.forEach((s) => s.destroy());
      server.close();
    },
  };
}

/**
 * Regression (issue 13, Redis HA): ioredis resends a call that was in flight when its connection
 * dropped. A commit that had already run was then applied twice: its dedupe-block APPEND was
 * stored twice (read back once, but the stored state grew with each repeat, which a failover
 * makes likely). The commit step now carries a token and runs at most once.
 */
describe('a commit resent after a dropped connection', () => {
  let servers: TestServers;
  let proxy: Awaited<ReturnType<typeof startDroppingProxy>>;
  let redis: Redis;
  beforeAll(async () => {
    servers = await startTestServers();
    proxy = await startDroppingProxy(servers.redis.port);
    redis = await openRedis({ ...compileOptions({}), redisUrl: proxy.url }, 'state');
  });
  afterAll(async () => {
    redis?.disconnect();
    proxy?.close();
    await servers?.stop();
  });

  it('is applied once', async () => {
    const keys = new RedisKeys(uniquePrefix());
    const store = new RedisShardStore(redis, keys);
    const epoch = await store.acquire(0);
    const block = (seq: number, bytes: string) => ({
      seq,
      watermark: 0,
      closedThrough: 0,
      head: new Uint8Array([seq]),
      writes: [],
      ops: [{ kind: 'append' as const, part: 'd0', bytes: new TextEncoder().encode(bytes) }],
    });
    await store.commit(0, epoch, block(1, 'aa'));
    proxy.arm();
    // Runs on the server, the reply is lost, ioredis reconnects and resends it.
    await store.commit(0, epoch, block(2, 'bb'));
    const direct = await openRedis({ ...compileOptions({}), redisUrl: servers.redisUrl }, 'ops');
    try {
      expect(await direct.get(keys.part(0, 'd0'))).toBe('aabb');
      expect(await direct.hget(keys.meta(0), 'seq')).toBe('2');
    } finally {
      direct.disconnect();
    }
  });
});
