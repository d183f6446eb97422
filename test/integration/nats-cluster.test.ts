import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startNatsCluster, type NatsCluster } from '../../src/runtime/nats-cluster.ts';
import { uniquePrefix } from '../helpers/servers.ts';
import { waitFor } from '../helpers/wait.ts';

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

    // Publishes fail while a new leader is elected: retry until one is accepted.
    let seq = 0;
    let lastErr: unknown;
    await waitFor(
      'a publish accepted after the kill',
      async () => {
        try {
          seq = (await js.publish(`${name}.a`, 'two', { msgID: 'm2' })).seq;
          return true;
        } catch (err) {
          lastErr = err;
          return false;
        }
      },
      { timeoutMs: 20_000, everyMs: 250, detail: () => String(lastErr) },
    );
    expect(seq).toBe(2);
    // The JetStream API can time out while the meta leader is being re-elected: retry.
    let after: Awaited<ReturnType<Awaited<ReturnType<typeof jetstreamManager>>['streams']['info']>> | undefined;
    let infoErr: unknown;
    await waitFor(
      'stream info after the leader was killed',
      async () => {
        after = await jetstreamManager(nc!)
          .then((jsm) => jsm.streams.info(name))
          .catch((err: unknown) => {
            infoErr = err;
            return undefined;
          });
        return after !== undefined;
      },
      { timeoutMs: 60_000, everyMs: 500, detail: () => String(infoErr) },
    );
    if (!after) throw new Error('unreachable: waited for stream info');
    expect(after.state.messages).toBe(2);
    expect(after.cluster?.leader).not.toBe(leader);

    await c.stop();
    await c.stop(); // idempotent
    for (const s of c.servers) expect(() => process.kill(s.pid, 0), `server pid ${s.pid} still running`).toThrow();
  });
});
