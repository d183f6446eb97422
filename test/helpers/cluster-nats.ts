/** A 3-node NATS JetStream cluster (real nats-server processes) in a temp dir, for failover tests. */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { freePort, startNatsServer, type ServerHandle } from '../../src/runtime/local-servers.ts';
import { waitFor } from './wait.ts';

export interface NatsClusterMember {
  name: string;
  handle: ServerHandle;
  url: string;
}

export interface NatsCluster {
  members: NatsClusterMember[];
  /** Comma list of every member's client URL (what NATS_URL gets). */
  urls: string;
  dir: string;
  member(name: string): NatsClusterMember;
  /** Stops every member still running and removes the temp dir. */
  stop(): Promise<void>;
}

/**
 * Starts `size` nats-servers with JetStream, server names n1..nN and full-mesh routes, then waits
 * until JetStream answers (`getAccountInfo` works: a meta leader is elected).
 */
export async function startNatsCluster(size = 3, readyTimeoutMs = 30_000): Promise<NatsCluster> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-natscluster-'));
  const clusterPorts: number[] = [];
  while (clusterPorts.length < size) {
    const p = await freePort();
    if (!clusterPorts.includes(p)) clusterPorts.push(p);
  }
  const routes = clusterPorts.map((p) => `nats-route://127.0.0.1:${p}`);
  const members: NatsClusterMember[] = [];
  const stop = async (): Promise<void> => {
    await Promise.all(members.map((m) => m.handle.stop()));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const started = await Promise.all(
      clusterPorts.map((port, i) =>
        startNatsServer({
          storeDir: path.join(dir, `n${i + 1}`),
          serverName: `n${i + 1}`,
          cluster: { name: 'adagg-test', port, routes: routes.filter((_, j) => j !== i) },
          logFile: path.join(dir, `n${i + 1}.log`),
        }),
      ),
    );
    started.forEach((handle, i) => members.push({ name: `n${i + 1}`, handle, url: handle.url }));
  } catch (err) {
    await stop();
    throw err;
  }
  const urls = members.map((m) => m.url).join(',');
  const nc = await connect({ servers: members.map((m) => m.url) });
  try {
    await waitFor(
      'the JetStream cluster to answer (a meta leader elected)',
      () =>
        jetstreamManager(nc)
          .then((jsm) => jsm.getAccountInfo())
          .then(() => true, () => false),
      { timeoutMs: readyTimeoutMs, everyMs: 250 },
    ).catch(async (err: unknown) => {
      await stop();
      throw err;
    });
  } finally {
    await nc.close();
  }
  return {
    members,
    urls,
    dir,
    member: (name) => {
      const m = members.find((x) => x.name === name);
      if (!m) throw new Error(`no nats member ${name}`);
      return m;
    },
    stop,
  };
}

/** Connects to every member still listed (a client that survives one server's death). */
export function connectCluster(c: NatsCluster): Promise<NatsConnection> {
  return connect({ servers: c.members.map((m) => m.url), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
}
