/**
 * The system under chaos, kept running across rounds: a 3-server NATS JetStream cluster (streams
 * R3), one Redis (AOF on, restarted on its port and dir after a kill), three `adagg node` processes
 * each reaching every NATS server through its own {@link TcpProxy}, and one `adagg gateway`
 * connected straight to NATS and Redis.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { startRedisServer, type ServerHandle } from '../../src/runtime/local-servers.ts';
import { topology } from '../../src/runtime/topology.ts';
import { killAllChildren, ProcCluster } from '../helpers/cluster-procs.ts';
import { uniquePrefix } from '../helpers/servers.ts';
import { ChaosNatsCluster } from './nats-members.ts';
import { TcpProxy } from './tcp-proxy.ts';

export const NODE_IDS = ['node1', 'node2', 'node3'] as const;

/** A Redis that can be SIGKILLed and restarted on the same port with the same AOF dir. */
export class ChaosRedis {
  private constructor(
    public handle: ServerHandle,
    readonly dir: string,
  ) {}

  static async start(dir: string): Promise<ChaosRedis> {
    return new ChaosRedis(await startRedisServer({ dir, logFile: path.join(dir, 'redis.log') }), dir);
  }

  get url(): string {
    return this.handle.url;
  }

  async kill(): Promise<void> {
    this.handle.kill('SIGCONT');
    this.handle.kill('SIGKILL');
    await this.handle.exited;
  }

  /** Restarts on the same port; ready once PING answers (after the AOF is loaded). */
  async restart(): Promise<void> {
    this.handle = await startRedisServer({ dir: this.dir, port: this.handle.port, logFile: path.join(this.dir, 'redis.log') });
  }
}

export class World {
  private nc: NatsConnection | undefined;
  jsm: JetStreamManager | undefined;

  private constructor(
    readonly dir: string,
    readonly nats: ChaosNatsCluster,
    readonly redis: ChaosRedis,
    /** Per node, one proxy per NATS server, in member order. */
    readonly proxies: Map<string, TcpProxy[]>,
    readonly cluster: ProcCluster,
    readonly prefix: string,
  ) {}

  /** Starts everything and waits until every shard runs on one of the three nodes. */
  static async start(log: (s: string) => void): Promise<World> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'adagg-chaos-'));
    log(`data under ${dir}`);
    const [nats, redis] = await Promise.all([ChaosNatsCluster.start(path.join(dir, 'nats')), ChaosRedis.start(path.join(dir, 'redis'))]);
    const proxies = new Map<string, TcpProxy[]>();
    for (const id of NODE_IDS) proxies.set(id, await Promise.all(nats.members.map((m) => TcpProxy.open(m.port, `${id}→${m.name}`))));
    const prefix = uniquePrefix();
    const cluster = new ProcCluster({
      natsUrl: nats.urls,
      redisUrl: redis.url,
      prefix,
      // Three nodes on one host: no per-node metrics listener (they would all want its one port).
      env: { ADAGG_REPLICAS: '3', ADAGG_MIN_NODES: '3', ADAGG_METRICS_PORT: '0' },
    });
    // Redis is killed on purpose: its client's reconnect errors are expected, not news.
    cluster.redis.on('error', () => undefined);
    const w = new World(dir, nats, redis, proxies, cluster, prefix);
    process.once('exit', () => {
      for (const m of nats.members) m.signal('SIGKILL');
      redis.handle.kill('SIGKILL');
    });
    try {
      for (const id of NODE_IDS) w.startNode(id);
      log('3 nodes starting; gateway starting');
      await cluster.startGateway(120_000);
      await cluster.waitSettled(NODE_IDS, 120_000, 250);
      w.nc = await connect({ servers: nats.members.map((m) => m.url), maxReconnectAttempts: -1, reconnectTimeWait: 250 });
      w.jsm = await jetstreamManager(w.nc, { timeout: 3000 });
    } catch (err) {
      await w.stop(true);
      throw err;
    }
    return w;
  }

  /** (Re)starts a runtime node whose NATS URLs are its proxies. */
  startNode(id: string): void {
    this.cluster.startNode(id, { NATS_URL: this.proxies.get(id)!.map((p) => p.url).join(',') });
  }

  /** Per shard subject, the stream's last sequence (what a caught-up actor has applied). */
  async streamLastSeqs(): Promise<Map<number, number>> {
    const t = topology(this.prefix);
    const out = new Map<number, number>();
    for (let s = 0; s < this.cluster.shards; s++) {
      const m = await this.jsm!.streams.getMessage(t.clicksStream, { last_by_subj: t.clickSubject(s) }).catch(() => null);
      out.set(s, m?.seq ?? 0);
    }
    return out;
  }

  /** What is not running as it should after healing (empty when all is up). */
  down(): string[] {
    const out: string[] = [];
    for (const id of NODE_IDS) if (!this.cluster.nodes.get(id)?.alive) out.push(id);
    if (!this.cluster.gateway?.alive) out.push('gateway');
    for (const m of this.nats.members) if (!m.alive) out.push(`nats ${m.name}`);
    for (const [, list] of this.proxies) for (const p of list) if (p.isCut) out.push(`proxy ${p.label} cut`);
    return out;
  }

  /**
   * Acts as a process supervisor would (systemd's `Restart=on-failure`): restarts every node, the
   * gateway or a NATS server that exited without a fault killing it, and returns one line per exit
   * with the end of its output (what made it exit).
   */
  async restartExited(): Promise<string[]> {
    const exits: string[] = [];
    // The line that says why: the last error-level log line or error message, else the last line.
    const last = (out: string): string => {
      const lines = out.split('\n').filter((l) => l.trim() !== '' && !/Unhandled error event|TCPConnectWrap/.test(l));
      const why = lines.findLast((l) => /ADAGG_E_|Error:|"level":(50|60)/.test(l)) ?? lines.at(-1) ?? '';
      return why.slice(0, 400);
    };
    for (const id of NODE_IDS) {
      const p = this.cluster.nodes.get(id);
      if (p && !p.alive) {
        exits.push(`${id} exited (${p.child.exitCode ?? p.child.signalCode}): ${last(p.output())}`);
        this.startNode(id);
      }
    }
    const gw = this.cluster.gateway;
    if (gw && !gw.alive) {
      exits.push(`gateway exited (${gw.child.exitCode ?? gw.child.signalCode}): ${last(gw.output())}`);
      await this.cluster.startGateway(120_000);
    }
    for (const m of this.nats.members) {
      if (!m.alive) {
        exits.push(`nats-server ${m.name} exited`);
        await m.start();
      }
    }
    return exits;
  }

  /** Kills everything; removes the data dir unless `keep` (kept after a failure, for inspection). */
  async stop(keep: boolean): Promise<void> {
    await this.nc?.close().catch(() => undefined);
    await this.cluster.close().catch(() => undefined);
    await killAllChildren();
    await Promise.all([...this.proxies.values()].flat().map((p) => p.close()));
    await this.nats.stop();
    await this.redis.handle.stop();
    if (!keep) await rm(this.dir, { recursive: true, force: true });
  }
}
