import { actorRegistry } from '../actors/index.ts';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { GatewayService } from '../gateway/gateway-service.ts';
import { compileOptions, optionsFromEnv, type CompiledOptions } from '../options.ts';
import { RuntimeEvents } from '../runtime/events.ts';
import { startNatsServer, startRedisServer, type ServerHandle } from '../runtime/local-servers.ts';
import { createLogger, type Logger } from '../runtime/logger.ts';
import { RuntimeNode } from '../runtime/runtime-node.ts';
import { acquireInstanceLock } from './instance-lock.ts';
import { DEV_TOKEN_FILE, devAuth } from './dev-token.ts';
import { writeInstance } from './local-instance.ts';
import { readyBlock } from './ready-block.ts';
import { readRiskRules, riskRulesOptions, startRiskRules } from './risk-rules-loader.ts';
import { actorWorkerEntry, reloadTokensOnHangup } from './services.ts';
import { Shutdown } from './shutdown.ts';
import { forgetServers, reapStaleServers, recordServers } from './stale-servers.ts';

/**
 * `adagg start` / `npm start`: the whole stack on one machine. Uses NATS_URL / REDIS_URL when set;
 * otherwise starts nats-server (JetStream) and redis-server (AOF) as children with data under
 * ADAGG_DATA_DIR (./data), holding that directory's instance lock, and stops them on exit.
 *
 * Stop order (SIGINT/SIGTERM, or a failed start): gateway, runtime node (final commit), child
 * servers, lock; within ADAGG_SHUTDOWN_TIMEOUT_MS (src/cli/shutdown.ts).
 */
export async function startAllInOne(): Promise<void> {
  const log = createLogger('adagg');
  // ADAGG_RISK_RULES turns hot-ad splitting off (src/cli/risk-rules-loader.ts).
  const o = riskRulesOptions(compileOptions(optionsFromEnv()), log);
  // Installed first: a Ctrl-C during startup stops what has started so far, servers included.
  const shutdown = new Shutdown(log, { timeoutMs: o.shutdownTimeoutMs }).install();
  try {
    await run(o, log, shutdown);
  } catch (err) {
    // Stopped by a signal meanwhile: that stop exits the process; the error is its consequence.
    if (shutdown.stopping) return;
    // A failed start stops what it started before main reports the error.
    await shutdown.close();
    shutdown.uninstall();
    throw err;
  }
}

async function run(o: CompiledOptions, log: Logger, shutdown: Shutdown): Promise<void> {
  // A bad ADAGG_RISK_RULES file fails the start before any server runs.
  const riskRules = await readRiskRules(o);
  const servers = await localServers(o, log, shutdown);
  if (shutdown.stopping) return;
  const natsUrl = o.natsUrl ?? servers.nats?.url;
  const redisUrl = o.redisUrl ?? servers.redis?.url;
  if (!natsUrl || !redisUrl) throw new Error('unreachable: no NATS or Redis URL');
  // With auth on and no ADAGG_TOKENS_FILE: the local dev token, printed below.
  const dev = await devAuth(o);
  const full = { ...o, ...dev.options, natsUrl, redisUrl };
  // In effect (one message per shard subject) before the actors read and the gateway takes clicks.
  await startRiskRules(full, riskRules, log);
  if (shutdown.stopping) return;
  const events = new RuntimeEvents();
  const node = new RuntimeNode(process.env.ADAGG_NODE_ID ?? 'local', full, { actors: actorRegistry, events, log, workerEntry: actorWorkerEntry });
  shutdown.add('runtime node', () => node.close());
  await node.startManaged();
  if (shutdown.stopping) return;
  const gateway = new GatewayService(full, { actors: actorRegistry, events, log, extraReady: () => ({ shards: node.running().size === o.shards }) });
  shutdown.add('gateway', () => gateway.close());
  const { url } = await gateway.start();
  if (shutdown.stopping) return;
  reloadTokensOnHangup(gateway, o, log);
  if (servers.dataDir) {
    // The CLI's way to this instance (src/cli/local-instance.ts); removed first on a stop.
    const tokenFile = dev.token === undefined ? {} : { tokenFile: path.join(servers.dataDir, DEV_TOKEN_FILE) };
    const rec = await writeInstance({ url, natsUrl, redisUrl, prefix: o.prefix, dataDir: servers.dataDir, ...tokenFile });
    shutdown.add('instance file', () => rec.remove());
  }
  log.info({ url, natsUrl, redisUrl, shards: o.shards, workers: o.workers, ...dev.readyFields(url) }, 'adagg is ready');
  // The log writes synchronously (runtime/logger.ts): the JSON ready line is out before the block.
  process.stdout.write(readyBlock({ url, natsUrl, redisUrl, dev, servers }));
}

interface LocalServers {
  nats?: ServerHandle;
  redis?: ServerHandle;
  /** Set when local servers keep their data there (and this process holds its lock). */
  dataDir?: string;
}

/**
 * The local servers `npm start` runs when NATS_URL / REDIS_URL are unset. Takes the data
 * directory's instance lock first (ADAGG_E_INSTANCE_LOCKED when a live instance holds it), and only
 * then reaps servers a killed run left behind.
 */
async function localServers(o: CompiledOptions, log: Logger, shutdown: Shutdown): Promise<LocalServers> {
  if (o.natsUrl && o.redisUrl) return {};
  const dataDir = path.resolve(o.dataDir);
  await mkdir(dataDir, { recursive: true });
  const lock = await acquireInstanceLock(dataDir, `adagg start (HTTP port ${String(o.httpPort)})`);
  shutdown.add('instance lock', () => lock.release());
  if (lock.tookOver) log.warn({ dir: dataDir }, 'took over the lock of a previous run that was killed');
  const reaped = await reapStaleServers(dataDir);
  if (reaped.length) log.warn({ pids: reaped }, 'stopped servers left by a previous run that was killed');
  // Runs after the servers' stop steps (reverse order): a clean stop leaves nothing to reap.
  shutdown.add('server pid file', () => forgetServers(dataDir));
  const out: LocalServers = { dataDir };
  const started: ServerHandle[] = [];
  const own = async (s: ServerHandle, name: string): Promise<void> => {
    started.push(s);
    await recordServers(dataDir, started.map((x) => x.pid));
    // Registered before the node and the gateway: stopped after them, once the final commit is done.
    shutdown.add(name, () => s.stop());
    shutdown.onForce(() => s.stopNow());
  };
  if (!o.natsUrl) {
    const dir = path.join(dataDir, 'nats');
    const nats = await startNatsServer({ storeDir: dir, logFile: path.join(dir, 'nats-server.log') });
    await own(nats, 'nats-server');
    out.nats = nats;
    log.info({ url: nats.url, dir }, 'started local nats-server');
  }
  if (!o.redisUrl && !shutdown.stopping) {
    const dir = path.join(dataDir, 'redis');
    await mkdir(dir, { recursive: true });
    const redis = await startRedisServer({ dir, appendOnly: true, logFile: path.join(dir, 'redis-server.log') });
    await own(redis, 'redis-server');
    out.redis = redis;
    log.info({ url: redis.url, dir }, 'started local redis-server (appendonly yes)');
  }
  return out;
}
