import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startNatsCluster, type NatsCluster } from '../../src/runtime/nats-cluster.ts';
import { uniquePrefix } from '../helpers/servers.ts';

/**
 * `startNatsCluster`: three nats-servers form one JetStream cluster; an R3 stream keeps accepting
 * publishes after its leader's server is SIGKILLed (a new leader is elected from the other two).
 */
describe('nats cluster', () => {
  let cluster: NatsCluster | undefined;
  let nc: NatsConnection | undefined;
  let dir: string | undefined;
  afterAll(async () => {
    await nc?.close().catch(() => undefined);
    await cluster?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('an R3 stream survives SIGKILL of its leader', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-test-'));
    cluster = await startNatsCluster({ dir: path.join(dir, 'cluster') });
    const c = cluster;
    expect(c.urls).toHaveLength(3);
    expect(c.url.split(',')).toEqual(c.urls);
    expect(c.names).toEqual(['n1', 'n2', 'n3']);
    for (const u of c.urls) expect(u).toMatch(/^nats:\/\/127\.0\.0\.1:\d+$/);
    expect(new Set(c.servers.map((s) => s.port)).size).toBe(3);
    expect(c.servers.map((s) => s.port)).not.toContain(4222);
    expect((await readdir(path.join(dir, 'cluster'))).sort()).toEqual(['n1', 'n2', 'n3']);

    nc = await connect({ servers: c.urls, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    const name = uniquePrefix();
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.add({ name, subjects: [`${name}.>`], num_replicas: 3 });
    expect(info.config.num_replicas).toBe(3);
    const js = jetstream(nc, { timeout: 2000 });
    const ack1 = await js.publish(`${name}.a`, 'one', { msgID: 'm1' });
    expect(ack1.seq).toBe(1);

    // Kill the server leading the stream: the hardest case (leader election, client maybe reconnecting).
    const leader = (await jsm.streams.info(name)).cluster?.leader;
    expect(c.names).toContain(leader);
    const victim = c.servers[c.names.indexOf(leader!)]!;
    victim.kill('SIGKILL');
    await expect(victim.exited).resolves.toBeNull();

    const end = Date.now() + 20_000;
    let seq = 0;
    let lastErr: unknown;
    while (Date.now() < end && seq === 0) {
      try {
        seq = (await js.publish(`${name}.a`, 'two', { msgID: 'm2' })).seq;
      } catch (err) {
        lastErr = err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    expect(seq, `publish after the kill failed: ${String(lastErr)}`).toBe(2);
    // The JetStream API can time out while the meta leader is being re-elected: retry briefly.
    let after: Awaited<ReturnType<Awaited<ReturnType<typeof jetstreamManager>>['streams']['info']>> | undefined;
    for (let i = 0; i < 20 && !after; i++) {
      after = await jetstreamManager(nc)
        .then((jsm) => jsm.streams.info(name))
        .catch(async () => {
          await new Promise((r) => setTimeout(r, 500));
          return undefined;
        });
    }
    if (!after) throw new Error('stream info unavailable 10 s after the leader was killed');
    expect(after.state.messages).toBe(2);
    expect(after.cluster?.leader).not.toBe(leader);

    await c.stop();
    await c.stop(); // idempotent
    for (const s of c.servers) expect(() => process.kill(s.pid, 0), `server pid ${s.pid} still running`).toThrow();
  });
});
