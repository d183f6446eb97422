/**
 * `adagg dev --cluster`: a whole multi-process cluster on one machine, for development and demos.
 * Three nats-servers as one JetStream cluster, one redis-server (AOF), N runtime nodes and one
 * gateway as child processes (`adagg node`, `adagg gateway`) with prefixed output. Ctrl-C/SIGTERM
 * stops the children first (final snapshots), then the servers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import readline from 'node:readline';
import { compileOptions, optionsFromEnv } from '../options.ts';
import { startRedisServer, type ServerHandle } from '../runtime/local-servers.ts';
import { startNatsCluster, type NatsCluster } from '../runtime/nats-cluster.ts';
import { reapStaleServers, recordServers } from './stale-servers.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const CHILD_STOP_GRACE_MS = 10_000;
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

/** Spawns `adagg <args>` (through tsx, from the repo root) with its output line-prefixed by `name`. */
function spawnAdagg(name: string, args: string[], env: NodeJS.ProcessEnv, width: number, color: number | undefined): Proc {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
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

async function stopProc(p: Proc): Promise<void> {
  if (p.done) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (!p.done) {
      process.stderr.write(`adagg dev: ${p.name} did not stop within ${CHILD_STOP_GRACE_MS / 1000}s, killing it\n`);
      p.child.kill('SIGKILL');
    }
  }, CHILD_STOP_GRACE_MS);
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
  const o = compileOptions(optionsFromEnv(env));
  const nodeCount = opts.nodes ?? 3;
  const dir = path.resolve(o.dataDir, 'cluster');
  await mkdir(dir, { recursive: true });
  const reaped = await reapStaleServers(dir);
  if (reaped.length) console.log(`adagg dev: stopped servers left by a previous run that was killed (pids ${reaped.join(', ')})`);

  const servers: ServerHandle[] = [];
  const procs: Proc[] = [];
  let nats: NatsCluster | undefined;
  let stopping: Promise<void> | undefined;
  const stopAll = (): Promise<void> =>
    (stopping ??= (async () => {
      await Promise.all(procs.map(stopProc)); // nodes commit final snapshots while NATS and Redis are up
      await nats?.stop();
      await Promise.all(servers.map((s) => s.stop()));
    })());
  let signalled = false;
  const onSignal = (signal: string): void => {
    if (signalled) return;
    signalled = true;
    console.log(`\nadagg dev: ${signal}: stopping nodes and gateway, then the servers`);
    void stopAll().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('exit', () => {
    for (const p of procs) if (!p.done) p.child.kill('SIGKILL');
  });

  try {
    console.log(`adagg dev: starting a ${NATS_SERVERS}-server NATS JetStream cluster and redis-server (data in ${dir})`);
    nats = await startNatsCluster({
      dir,
      size: NATS_SERVERS,
      name: 'adagg',
      logDir: path.join(dir, 'logs'),
      ...(opts.basePort === undefined ? {} : { basePort: opts.basePort }),
    });
    const redisDir = path.join(dir, 'redis');
    const redis = await startRedisServer({
      dir: redisDir,
      appendOnly: true,
      logFile: path.join(dir, 'logs', 'redis.log'),
      ...(opts.basePort === undefined ? {} : { port: opts.basePort + NATS_SERVERS }),
    });
    servers.push(redis);
    await recordServers(dir, [...nats.servers, redis].map((s) => s.pid));
    if (signalled) return;

    const childEnv: NodeJS.ProcessEnv = {
      ...env,
      NATS_URL: nats.url,
      REDIS_URL: redis.url,
      ADAGG_REPLICAS: String(NATS_SERVERS),
      // Spread the first assignment over all nodes instead of giving everything to the first one up.
      ADAGG_MIN_NODES: env.ADAGG_MIN_NODES ?? String(nodeCount),
    };
    const names = [...Array.from({ length: nodeCount }, (_, i) => `node${i + 1}`), 'gateway'];
    const width = Math.max(...names.map((n) => n.length));
    const tty = process.stdout.isTTY === true;
    names.forEach((name, i) => {
      const args = name === 'gateway' ? ['gateway'] : ['node', '--id', name];
      const p = spawnAdagg(name, args, childEnv, width, tty ? COLORS[i % COLORS.length] : undefined);
      procs.push(p);
      void p.exited.then((code) => {
        if (!stopping) console.log(`adagg dev: ${name} exited unexpectedly (code ${String(code)}); the others keep running`);
      });
    });

    const gatewayUrl = `http://127.0.0.1:${o.httpPort}`;
    const gateway = procs[procs.length - 1]!;
    if (!(await gatewayReady(gatewayUrl, gateway))) {
      if (signalled) return;
      console.error(`adagg dev: the gateway did not become ready at ${gatewayUrl} (see its output above); stopping`);
      await stopAll();
      process.exit(1);
    }
    console.log(
      [
        '',
        'adagg dev cluster is up',
        `  gateway   ${gatewayUrl}   (dashboard /, readiness /readyz, metrics /metrics)`,
        `  nats      ${nats.url}   (JetStream cluster 'adagg', streams R${NATS_SERVERS})`,
        `  redis     ${redis.url}   (appendonly yes)`,
        `  nodes     ${names.slice(0, -1).join(', ')}`,
        `  data      ${dir}   (server logs in ${path.join(dir, 'logs')})`,
        `  operate   REDIS_URL=${redis.url} ADAGG_PREFIX=${o.prefix} ADAGG_SHARDS=${o.shards} npx adagg nodes | placement | move | drain`,
        'Ctrl-C stops everything.',
        '',
      ].join('\n'),
    );
  } catch (err) {
    await stopAll().catch(() => undefined);
    throw err;
  }
}
