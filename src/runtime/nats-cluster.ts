/**
 * A JetStream cluster of nats-server processes on one machine (loopback), for `adagg dev --cluster`
 * and multi-process tests. Each server is a child started by `startNatsServer` with its own store
 * directory, a unique server name and routes to the others. Production runs one server per machine
 * from a config file instead (deploy/nats/, deploy/README.md).
 */
import { jetstreamManager } from '@nats-io/jetstream';
import path from 'node:path';
import { AdaggError, ErrorCode } from '../errors.ts';
import { freePort, startNatsServer, type ServerHandle } from './local-servers.ts';
import { connectNats } from './nats.ts';

export interface NatsClusterOptions {
  /** Parent of the servers' JetStream store dirs (`<dir>/n1` ...), created if missing. */
  dir: string;
  /** Number of servers. @default 3 */
  size?: number;
  /** Cluster name. @default 'adagg' */
  name?: string;
  /**
   * Client ports basePort, basePort+1, ...; cluster (route) ports basePort+2000+i (4301 gives the
   * ports of deploy/nats/). Unset: free ports, retried if one is taken meanwhile.
   */
  basePort?: number;
  /** Where each server logs (`<logDir>/nX.log`); unset: output kept in memory for errors only. */
  logDir?: string;
  /** How long to wait for the JetStream meta leader. @default 30000 */
  readyTimeoutMs?: number;
}

export interface NatsCluster {
  /** Client URLs, one per server. */
  urls: string[];
  /** The same as one comma list (the form NATS_URL takes). */
  url: string;
  /** Server names (`n1` ...), in the order of `urls` and `servers`. */
  names: string[];
  servers: ServerHandle[];
  /** Stops every server (SIGTERM, SIGKILL after 5 s). Idempotent. */
  stop(): Promise<void>;
}

const ATTEMPTS = 3;
const CLUSTER_PORT_OFFSET = 2000;

/** Starts the servers and resolves once JetStream has a meta leader (accepts API requests). */
export async function startNatsCluster(opts: NatsClusterOptions): Promise<NatsCluster> {
  const size = opts.size ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new AdaggError(ErrorCode.BadOption, `cluster size must be >= 1, got ${size}`);
  const name = opts.name ?? 'adagg';
  const names = Array.from({ length: size }, (_, i) => `n${i + 1}`);
  for (let attempt = 1; ; attempt++) {
    const fixed = opts.basePort !== undefined;
    const clusterPorts = fixed
      ? names.map((_, i) => opts.basePort! + CLUSTER_PORT_OFFSET + i)
      : await distinctFreePorts(size);
    const started = await Promise.allSettled(
      names.map((n, i) =>
        startNatsServer({
          storeDir: path.join(opts.dir, n),
          serverName: n,
          ...(fixed ? { port: opts.basePort! + i } : {}),
          ...(opts.logDir ? { logFile: path.join(opts.logDir, `${n}.log`) } : {}),
          cluster: {
            name,
            port: clusterPorts[i]!,
            routes: clusterPorts.filter((_, j) => j !== i).map((p) => `nats://127.0.0.1:${p}`),
          },
        }),
      ),
    );
    const servers = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      await Promise.all(servers.map((s) => s.stop()));
      // An auto-picked route port may have been taken between freePort() and the server binding it.
      if (!fixed && attempt < ATTEMPTS && /address already in use/i.test(String((failed.reason as Error).message))) continue;
      throw failed.reason;
    }
    const urls = servers.map((s) => s.url);
    let stopping: Promise<void> | undefined;
    const cluster: NatsCluster = {
      urls,
      url: urls.join(','),
      names,
      servers,
      stop: () => (stopping ??= Promise.all(servers.map((s) => s.stop())).then(() => undefined)),
    };
    try {
      await waitForJetStream(cluster.url, opts.readyTimeoutMs ?? 30_000);
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }
}

/**
 * Resolves once JetStream answers an account-info request through `url` (a comma list): in a
 * cluster that needs an elected meta leader. Throws AdaggError(ServerStart) after `timeoutMs`.
 */
export async function waitForJetStream(url: string, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  const nc = await connectNats(url, 'adagg-jetstream-probe');
  let last: unknown;
  try {
    while (Date.now() < end) {
      try {
        const jsm = await jetstreamManager(nc, { timeout: 2000 });
        await jsm.getAccountInfo();
        return;
      } catch (err) {
        last = err;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await nc.close().catch(() => undefined);
  }
  throw new AdaggError(ErrorCode.ServerStart, `JetStream at ${url} not available within ${timeoutMs} ms (no meta leader?): ${(last as Error | undefined)?.message ?? 'no answer'}`, {
    cause: last,
  });
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < n) out.add(await freePort());
  return [...out];
}
