import { access, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { freePort, startNatsServer } from '../../src/runtime/local-servers.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';

/** True while a process with this pid exists (signal 0 only checks). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('local servers', () => {
  let servers: TestServers | undefined;
  afterAll(async () => servers?.stop());

  it('starts nats and redis, survives kill, stops cleanly', async () => {
    const exitHooksBefore = process.listenerCount('exit');
    servers = await startTestServers();
    const s = servers;
    expect(s.natsUrl).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(s.redisUrl).toMatch(/^redis:\/\/127\.0\.0\.1:\d+$/);
    expect([s.nats.port, s.redis.port]).not.toContain(4222);
    expect([s.nats.port, s.redis.port]).not.toContain(6379);
    // One shared hook for all children, not one per server.
    expect(process.listenerCount('exit') - exitHooksBefore).toBeLessThanOrEqual(1);

    const nc = await connect({ servers: s.natsUrl });
    try {
      const name = uniquePrefix();
      const jsm = await jetstreamManager(nc);
      await jsm.streams.add({ name, subjects: [`${name}.>`] });
      const ack = await jetstream(nc).publish(`${name}.a`, 'hello');
      expect(ack.stream).toBe(name);
      expect(ack.seq).toBe(1);
    } finally {
      await nc.close();
    }

    const redis = new Redis(s.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
    try {
      await redis.connect();
      const key = `${uniquePrefix()}:k`;
      await redis.set(key, 'v1');
      expect(await redis.get(key)).toBe('v1');
      expect(await redis.config('GET', 'appendonly')).toEqual(['appendonly', 'yes']);
    } finally {
      redis.disconnect();
    }

    s.nats.kill('SIGKILL');
    await expect(s.nats.exited).resolves.toBeNull();
    expect(alive(s.nats.pid)).toBe(false);

    await s.stop();
    await s.stop(); // idempotent
    expect(alive(s.redis.pid)).toBe(false);
    await expect(access(s.dir)).rejects.toThrow();
  });

  it('fails with ServerStart and the server output when a fixed port is taken', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-test-'));
    const port = await freePort();
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(port, '127.0.0.1', r));
    try {
      const err: unknown = await startNatsServer({ port, storeDir: dir }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AdaggError);
      expect((err as AdaggError).code).toBe(ErrorCode.ServerStart);
      expect((err as AdaggError).message).toMatch(/address already in use/i);
    } finally {
      await new Promise((r) => blocker.close(r));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
