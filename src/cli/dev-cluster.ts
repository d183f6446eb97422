/**
 * `adagg dev --cluster`: a whole multi-process cluster on one machine, for development and demos.
 * Three nats-servers as one JetStream cluster, one redis-server (AOF), N runtime nodes and one
 * gateway as child processes (`adagg node`, `adagg gateway`) with prefixed output. Ctrl-C/SIGTERM
 * stops the children first (final snapshots), then the servers, within ADAGG_SHUTDOWN_TIMEOUT_MS
 * plus a margin; a second Ctrl-C exits at once (src/cli/shutdown.ts). The servers run in their own
 * process groups, so a Ctrl-C never stops them before the nodes' final commits. One dev cluster per
 * data directory (src/cli/instance-lock.ts).
 */
import { devAuth } from './dev-token.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import { compileOptions, optionsFromEnv } from '../options.ts';
import { startRedisServer, type ServerHandle } from '../runtime/local-servers.ts';
import { createLogger } from '../runtime/logger.ts';
import { startNatsCluster, type NatsCluster } from '../runtime/nats-cluster.ts';
import { adaggNodeArgs } from './entry-points.ts';
import { acquireInstanceLock } from './instance-lock.ts';
import { Shutdown } from './shutdown.ts';
import { forgetServers, reapStaleServers, recordServers } from './stale-servers.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
// The children stop within their own ADAGG_SHUTDOWN_TIMEOUT_MS; this margin covers their exit and the servers' stop.
const STOP_MARGIN_MS = 5_000;
const READY_TIMEOUT_MS = 90_000;
const NATS_SERVERS = 3;

export interface DevClusterOptions {
  /** Runtime node processes. @default 3 */
  nodes?: number;
  /** NATS client ports P..P+2, route ports P+2000..P+2002, Redis P+3. Unset: free ports. */
  basePort?: number;
  env?: NodeJS.ProcessEnv;
}

interface Proc {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  done: boolean;
}

const COLORS = [36, 33, 35, 32, 34, 91, 96, 93];

/** Spawns `adagg <args>` (as this process runs: dist/ or tsx) from the repo root, its output line-prefixed by `name`. */
function spawnAdagg(name: string, args: string[], env: NodeJS.ProcessEnv, width: number, color: number | undefined): Proc {
  const child = spawn(process.execPath, adaggNodeArgs(args), {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const label = name.padEnd(width);
  const prefix = color === undefined ? `${label} | ` : `\x1b[${color}m${label}\x1b[0m | `;
  for (const [stream, out] of [[child.stdout, process.stdout], [child.stderr, process.stderr]] as const) {
    if (!stream) continue;
    readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (l) => out.write(`${prefix}${l}\n`));
  }
  const p: Proc = { name, child, done: false, exited: Promise.resolve(null) };
  p.exited = new Promise((resolve) => {
    child.once('exit', (code) => {
      p.done = true;
      resolve(code);
    });
    child.once('error', (err) => {
      process.stderr.write(`${prefix}could not start: ${err.message}\n`);
      p.done = true;
      resolve(null);
    });
  });
  return p;
}

async function stopProc(p: Proc, graceMs: number): Promise<void> {
  if (p.done) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (!p.done) {
      process.stderr.write(`adagg dev: ${p.name} did not stop within ${String(graceMs / 1000)}s, killing it\n`);
      p.child.kill('SIGKILL');
    }
  }, graceMs);
  await p.exited;
  clearTimeout(timer);
}

/** Polls the gateway's /readyz until it answers 200; false if the gateway exits or time runs out. */
async function gatewayReady(url: string, gateway: Proc): Promise<boolean> {
  const end = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < end && !gateway.done) {
    const ok = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok, () => false);
    if (ok) return true;
    await new Promise((r) => setTimeout(r, 250));
  }
  return false;
}

/** Starts everything and keeps running until SIGINT/SIGTERM (then exits the process). */
export async function runDevCluster(opts: DevClusterOptions = {}): Promise<void> {
  const env = opts.env ?? process.env;
  const cluster = new DevCluster(opts, env, compileOptions(optionsFromEnv(env)));
  await cluster.run();
}

/** One `adagg dev --cluster` run: its servers, its child processes and their orderly stop. */
class DevCluster {
  private readonly servers: ServerHandle[] = [];
  private readonly procs: Proc[] = [];
  private nats: NatsCluster | undefined;
  private stopping: Promise<void> | undefined;
  private readonly shutdown: Shutdown;
  private readonly dir: string;
  private readonly nodeCount: number;

  constructor(
    private readonly opts: DevClusterOptions,
    private readonly env: NodeJS.ProcessEnv,
    private readonly o: ReturnType<typeof compileOptions>,
  ) {
    this.dir = path.resolve(o.dataDir, 'cluster');
    this.nodeCount = opts.nodes ?? 3;
    this.shutdown = new Shutdown(createLogger('adagg-dev'), { timeoutMs: o.shutdownTimeoutMs + STOP_MARGIN_MS });
  }

  async run(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const { shutdown } = this;
    // Before the reaper: the servers of a live dev cluster in this directory are not leftovers.
    const lock = await acquireInstanceLock(this.dir, 'adagg dev --cluster');
    shutdown.add('instance lock', () => lock.release());
    const reaped = await reapStaleServers(this.dir);
    if (reaped.length) console.log(`adagg dev: stopped servers left by a previous run that was killed (pids ${reaped.join(', ')})`);
    // One step: nodes and gateway first, then the servers (stopAll's order).
    shutdown.add('cluster', () => this.stopAll());
    shutdown.onForce(() => {
      for (const p of this.procs) if (!p.done) p.child.kill('SIGKILL');
      for (const s of [...this.servers, ...(this.nats?.servers ?? [])]) s.stopNow();
    });
    shutdown.install();
    process.on('exit', () => {
      for (const p of this.procs) if (!p.done) p.child.kill('SIGKILL');
    });
    try {
      const { nats, redis } = await this.startServers();
      if (shutdown.stopping) return;
      // The gateway child needs tokens (auth is on by default): the cluster's own dev token.
      const dev = await devAuth({ ...this.o, dataDir: this.dir });
      const names = this.spawnProcesses(nats.url, redis.url, dev.options.tokensFile);
      const gatewayUrl = `http://127.0.0.1:${this.o.httpPort}`;
      if (!(await gatewayReady(gatewayUrl, this.procs[this.procs.length - 1]!))) {
        if (shutdown.stopping) return;
        console.error(`adagg dev: the gateway did not become ready at ${gatewayUrl} (see its output above); stopping`);
        await shutdown.close();
        process.exit(1);
      }
      this.printBanner(gatewayUrl, nats.url, redis.url, names, dev.readyLines(gatewayUrl));
    } catch (err) {
      if (shutdown.stopping) return;
      await shutdown.close();
      shutdown.uninstall();
      throw err;
    }
  }

  /** Nodes first (they commit final snapshots while NATS and Redis are up), then the servers. */
  private stopAll(): Promise<void> {
    return (this.stopping ??= (async () => {
      console.log('\nadagg dev: stopping nodes and gateway, then the servers');
      await Promise.all(this.procs.map((p) => stopProc(p, this.o.shutdownTimeoutMs + STOP_MARGIN_MS / 2)));
      await this.nats?.stop();
      await Promise.all(this.servers.map((s) => s.stop()));
      await forgetServers(this.dir);
    })());
  }

  private async startServers(): Promise<{ nats: NatsCluster; redis: ServerHandle }> {
    const { dir, opts } = this;
    console.log(`adagg dev: starting a ${NATS_SERVERS}-server NATS JetStream cluster and redis-server (data in ${dir})`);
    const nats = await startNatsCluster({
      dir,
      size: NATS_SERVERS,
      name: 'adagg',
      logDir: path.join(dir, 'logs'),
      ...(opts.basePort === undefined ? {} : { basePort: opts.basePort }),
    });
    this.nats = nats;
    const redis = await startRedisServer({
      dir: path.join(dir, 'redis'),
      appendOnly: true,
      logFile: path.join(dir, 'logs', 'redis.log'),
      ...(opts.basePort === undefined ? {} : { port: opts.basePort + NATS_SERVERS }),
    });
    this.servers.push(redis);
    await recordServers(dir, [...nats.servers, redis].map((s) => s.pid));
    return { nats, redis };
  }

  /** Starts the runtime nodes and the gateway (last); returns their names in that order. */
  private spawnProcesses(natsUrl: string, redisUrl: string, tokensFile: string | undefined): string[] {
    const { env, nodeCount } = this;
    const childEnv: NodeJS.ProcessEnv = {
      ...env,
      NATS_URL: natsUrl,
      REDIS_URL: redisUrl,
      ADAGG_REPLICAS: String(NATS_SERVERS),
      // Spread the first assignment over all nodes instead of giving everything to the first one up.
      ADAGG_MIN_NODES: env.ADAGG_MIN_NODES ?? String(nodeCount),
      ...(tokensFile === undefined ? {} : { ADAGG_TOKENS_FILE: tokensFile }),
    };
    const names = [...Array.from({ length: nodeCount }, (_, i) => `node${i + 1}`), 'gateway'];
    const width = Math.max(...names.map((n) => n.length));
    const tty = process.stdout.isTTY === true;
    names.forEach((name, i) => {
      const args = name === 'gateway' ? ['gateway'] : ['node', '--id', name];
      // Each node its own /metrics port (ADAGG_METRICS_PORT + its index; 0 keeps them off).
      const metricsBase = Number(env.ADAGG_METRICS_PORT ?? 9464);
      const procEnv = name === 'gateway' || metricsBase === 0 ? childEnv : { ...childEnv, ADAGG_METRICS_PORT: String(metricsBase + i) };
      const p = spawnAdagg(name, args, procEnv, width, tty ? COLORS[i % COLORS.length] : undefined);
      this.procs.push(p);
      void p.exited.then((code) => {
        if (!this.stopping) console.log(`adagg dev: ${name} exited unexpectedly (code ${String(code)}); the others keep running`);
      });
    });
    return names;
  }

  private printBanner(gatewayUrl: string, natsUrl: string, redisUrl: string, names: readonly string[], tokenLines: readonly string[]): void {
    const { dir, o } = this;
    console.log(
      [
        '',
        'adagg dev cluster is up',
        `  gateway   ${gatewayUrl}   (dashboard /, readiness /readyz, metrics /metrics)`,
        ...tokenLines,
        `  nats      ${natsUrl}   (JetStream cluster 'adagg', streams R${NATS_SERVERS})`,
        `  redis     ${redisUrl}   (appendonly yes)`,
        `  nodes     ${names.slice(0, -1).join(', ')}`,
        `  data      ${dir}   (server logs in ${path.join(dir, 'logs')})`,
        `  operate   REDIS_URL=${redisUrl} ADAGG_PREFIX=${o.prefix} ADAGG_SHARDS=${o.shards} npx adagg nodes | placement | move | drain`,
        'Ctrl-C stops everything.',
        '',
      ].join('\n'),
    );
  }
}
