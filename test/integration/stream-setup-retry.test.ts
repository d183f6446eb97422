import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, type ServerHandle } from '../../src/runtime/local-servers.ts';
import { HotRoutes } from '../../src/runtime/hot/hot-routes.ts';
import { ensureStreams } from '../../src/runtime/streams.ts';
import { topology } from '../../src/runtime/topology.ts';
import { uniquePrefix } from '../helpers/servers.ts';

/**
 * A process starting against a loaded JetStream (a request timing out, a cluster still electing
 * its meta leader) once died with "adagg: timeout" at its stream set-up; the set-up now retries
 * transient failures. Here the server is frozen (SIGSTOP) while a node sets up its streams, and
 * thawed after the first request has timed out.
 */
describe('stream set-up against a frozen JetStream', () => {
  let dir: string;
  let nats: ServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-setup-retry-'));
    nats = await startNatsServer({ storeDir: dir });
    nc = await connect({ servers: nats.url, timeout: 5000 });
  }, 60_000);
  afterAll(async () => {
    nats?.kill('SIGCONT');
    await nc?.close().catch(() => undefined);
    await nats?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Freezes the server, runs `fn`, and thaws the server after 7 s, once the first JetStream API
   * request (5 s timeout) has failed; `fn` gets whether the thaw has happened yet.
   */
  async function frozenFor7s<T>(fn: (thawed: () => boolean) => Promise<T>): Promise<T> {
    nats.kill('SIGSTOP');
    let thawed = false;
    const thaw = setTimeout(() => {
      thawed = true;
      nats.kill('SIGCONT');
    }, 7000);
    try {
      return await fn(() => thawed);
    } finally {
      clearTimeout(thaw);
      nats.kill('SIGCONT');
    }
  }

  it('retries a timed-out request and creates the streams once the server answers', async () => {
    const topo = topology(uniquePrefix());
    await frozenFor7s(async (thawed) => {
      const jsm = await ensureStreams(nc, topo, { shards: 2, replicas: 1, rawRetentionMs: 3600_000, duplicateWindowMs: 60_000, setupRetryMs: 60_000 });
      expect(thawed()).toBe(true);
      expect((await jsm.streams.info(topo.clicksStream)).config.name).toBe(topo.clicksStream);
    });
  }, 90_000);

  it('opens the hot-routes bucket once the server answers (a chaos smoke node died of a timed-out bucket create at start)', async () => {
    const topo = topology(uniquePrefix());
    await frozenFor7s(async (thawed) => {
      const routes = await HotRoutes.open(nc, topo, 1, 60_000);
      expect(thawed()).toBe(true);
      routes.close();
      await expect(HotRoutes.open(nc, topology(uniquePrefix()), 1, 0).then((r) => r.close())).resolves.toBeUndefined();
    });
  }, 90_000);

  it('gives up after the retry bound with the timeout', async () => {
    const topo = topology(uniquePrefix());
    nats.kill('SIGSTOP');
    try {
      await expect(ensureStreams(nc, topo, { shards: 2, replicas: 1, rawRetentionMs: 3600_000, duplicateWindowMs: 60_000, setupRetryMs: 1000 })).rejects.toThrow(/timeout/i);
      await expect(HotRoutes.open(nc, topo, 1, 1000)).rejects.toThrow(/timeout/i);
    } finally {
      nats.kill('SIGCONT');
    }
  }, 90_000);
});
