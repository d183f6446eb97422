import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisServer, type ServerHandle } from '../../src/runtime/local-servers.ts';
import { createRedis } from '../../src/runtime/redis-connect.ts';
import { waitFor } from '../helpers/wait.ts';

/**
 * A Sentinel stand-in that names a real redis-server as the primary, answering the primary lookup
 * only when the test releases it, so the test can act while ioredis is asking.
 */
function fakeSentinel(primaryPort: number): Promise<{ port: number; asked: () => number; release: () => void; close: () => Promise<void> }> {
  let asked = 0;
  let held: Array<() => void> = [];
  let released = false;
  const sockets = new Set<net.Socket>();
  const bulk = (s: string): string => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    sock.on('data', (buf) => {
      // Each RESP command arrives whole here (they are tiny); answer per command in the chunk.
      const text = buf.toString('latin1').toLowerCase();
      const commands = text.split('*').filter((c) => c.length > 0);
      for (const c of commands) {
        if (c.includes('get-master-addr-by-name')) {
          asked++;
          const answer = (): void => void sock.write(`*2\r\n${bulk('127.0.0.1')}${bulk(String(primaryPort))}`);
          if (released) answer();
          else held.push(answer);
        } else if (c.includes('sentinels')) sock.write('*0\r\n');
        else if (c.includes('subscribe')) sock.write(`*3\r\n${bulk('subscribe')}${bulk('+switch-master')}:1\r\n`);
        else sock.write('+OK\r\n');
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as net.AddressInfo).port,
        asked: () => asked,
        release: () => {
          released = true;
          const h = held;
          held = [];
          h.forEach((a) => a());
        },
        close: () =>
          new Promise<void>((r) => {
            sockets.forEach((s) => s.destroy());
            server.close(() => r());
          }),
      });
    });
  });
}

/**
 * ioredis ends a Sentinel-mode connection for good when its connector is told to disconnect (what
 * its failover detector does on `+switch-master`) while it is asking a Sentinel for the primary:
 * every later call then fails with "Connection is closed" although Redis is up. That race stopped a
 * node's commits for good after a Redis failover (test/ops/redis-failover.test.ts, 1 run in ~20).
 * adagg's long-lived connections connect again (redis-client.ts `revive`).
 */
describe('a Redis connection ended by a failover announcement mid-lookup', () => {
  let dir: string;
  let redisServer: ServerHandle;
  let primaryPort: number;
  const conns: Redis[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-revive-'));
    redisServer = await startRedisServer({ dir });
    primaryPort = Number(new URL(redisServer.url).port);
  }, 60_000);
  afterAll(async () => {
    conns.forEach((c) => c.disconnect());
    await redisServer?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** Connects through a fake Sentinel, and disconnects the connector while the lookup is held. */
  async function raced(role: 'state' | 'ops-watch' | 'ops'): Promise<Redis> {
    const sentinel = await fakeSentinel(primaryPort);
    try {
      const redis = createRedis({ redisUrl: 'redis://', redisSentinels: [`127.0.0.1:${sentinel.port}`], redisSentinelName: 'm', redisStateTimeoutMs: 3000 }, role);
      redis.on('error', () => undefined);
      conns.push(redis);
      if (redis.status === 'wait') redis.connect().catch(() => undefined);
      await waitFor('ioredis asking the Sentinel for the primary', () => sentinel.asked() > 0, { timeoutMs: 20_000, everyMs: 10 });
      // What the failover detector does on `+switch-master`.
      (redis as unknown as { connector: { disconnect(): void } }).connector.disconnect();
      sentinel.release();
      await waitFor('the connection settled', () => redis.status === 'ready' || redis.status === 'end', { timeoutMs: 20_000, everyMs: 10 });
      return redis;
    } finally {
      // Later lookups are answered at once.
      sentinel.release();
      setTimeout(() => void sentinel.close(), 20_000).unref();
    }
  }

  it('a node state connection connects again and serves calls', async () => {
    const redis = await raced('state');
    await waitFor('the connection ready again', () => redis.status === 'ready', { timeoutMs: 20_000, everyMs: 20 });
    await expect(redis.set('revive-k', 'v')).resolves.toBe('OK');
    expect(await redis.get('revive-k')).toBe('v');
  }, 60_000);

  it('a one-shot operator connection is left ended (the command fails instead)', async () => {
    const redis = await raced('ops');
    // It may have become ready before the disconnect took effect; only an ended one is checked.
    if (redis.status === 'end') {
      await new Promise((r) => setTimeout(r, 500)); // longer than the first revival delay (100 ms)
      expect(redis.status).toBe('end');
    }
  }, 60_000);

  it('a connection closed by its owner stays closed', async () => {
    const redis = await raced('state');
    await waitFor('ready', () => redis.status === 'ready', { timeoutMs: 20_000, everyMs: 20 });
    redis.disconnect();
    await waitFor('ended', () => redis.status === 'end', { timeoutMs: 20_000, everyMs: 20 });
    await new Promise((r) => setTimeout(r, 500)); // longer than the first revival delay (100 ms)
    expect(redis.status).toBe('end');
  }, 60_000);
});
