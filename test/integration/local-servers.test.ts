import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { freePort, startNatsServer, startRedisServer } from '../../src/runtime/local-servers.ts';
import { startTestServers, uniquePrefix, type TestServers } from '../helpers/servers.ts';
import { alive } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';

/** The process group of a pid (field 5 of /proc/<pid>/stat). */
function processGroup(pid: number): number {
  const stat = readFileSync(`/proc/${String(pid)}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
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

  it('runs each server in its own process group (a Ctrl-C to ours does not reach it)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-test-'));
    const redis = await startRedisServer({ dir });
    try {
      expect(processGroup(redis.pid)).toBe(redis.pid);
      expect(processGroup(redis.pid)).not.toBe(processGroup(process.pid));
    } finally {
      await redis.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a watchdog kills the servers when their parent is SIGKILLed', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-test-'));
    const script = `
      import { startRedisServer } from ${JSON.stringify(path.resolve(import.meta.dirname, '../../src/runtime/local-servers.ts'))};
      const r = await startRedisServer({ dir: ${JSON.stringify(dir)} });
      process.stdout.write('PID ' + r.pid + '\\n');
      setInterval(() => {}, 1000);`;
    const parent = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      let out = '';
      parent.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await waitFor('server pid printed', () => /PID \d+/.test(out), { timeoutMs: 60_000, everyMs: 50 });
      const pid = Number(/PID (\d+)/.exec(out)![1]);
      expect(alive(pid)).toBe(true);
      parent.kill('SIGKILL');
      await waitFor('server killed by its watchdog', () => !alive(pid), { timeoutMs: 10_000, everyMs: 50 });
    } finally {
      parent.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
