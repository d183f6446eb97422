import { actorRegistry } from '../actors/index.ts';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { GatewayService } from '../gateway/gateway-service.ts';
import { compileOptions, optionsFromEnv } from '../options.ts';
import { RuntimeEvents } from '../runtime/events.ts';
import { startNatsServer, startRedisServer, type ServerHandle } from '../runtime/local-servers.ts';
import { createLogger } from '../runtime/logger.ts';
import { RuntimeNode } from '../runtime/runtime-node.ts';
import { actorWorkerEntry, onShutdown } from './services.ts';
import { reapStaleServers, recordServers } from './stale-servers.ts';

/**
 * `adagg start` / `npm start`: the whole stack on one machine. Uses NATS_URL / REDIS_URL when set;
 * otherwise starts nats-server (JetStream) and redis-server (AOF) as children with data under
 * ADAGG_DATA_DIR (./data) and stops them on exit.
 */
export async function startAllInOne(): Promise<void> {
  const log = createLogger('adagg');
  const o = compileOptions(optionsFromEnv());
  const servers: ServerHandle[] = [];
  let natsUrl = o.natsUrl;
  let redisUrl = o.redisUrl;
  if (!natsUrl || !redisUrl) {
    await mkdir(o.dataDir, { recursive: true });
    const reaped = await reapStaleServers(o.dataDir);
    if (reaped.length) log.warn({ pids: reaped }, 'stopped servers left by a previous run that was killed');
  }
  if (!natsUrl) {
    const dir = path.resolve(o.dataDir, 'nats');
    const nats = await startNatsServer({ storeDir: dir, logFile: path.join(dir, 'nats-server.log') });
    servers.push(nats);
    natsUrl = nats.url;
    log.info({ url: natsUrl, dir }, 'started local nats-server');
  }
  if (!redisUrl) {
    const dir = path.resolve(o.dataDir, 'redis');
    await mkdir(dir, { recursive: true });
    const redis = await startRedisServer({ dir, appendOnly: true, logFile: path.join(dir, 'redis-server.log') });
    servers.push(redis);
    redisUrl = redis.url;
    log.info({ url: redisUrl, dir }, 'started local redis-server (appendonly yes)');
  }
  if (servers.length) await recordServers(o.dataDir, servers.map((s) => s.pid));
  const full = { ...o, natsUrl, redisUrl };
  const events = new RuntimeEvents();
  const node = new RuntimeNode(process.env.ADAGG_NODE_ID ?? 'local', full, { actors: actorRegistry, events, log, workerEntry: actorWorkerEntry });
  await node.startManaged();
  const gateway = new GatewayService(full, { actors: actorRegistry, events, log, extraReady: () => ({ shards: node.running().size === o.shards }) });
  const { url } = await gateway.start();
  log.info({ url, natsUrl, redisUrl, shards: o.shards, workers: o.workers }, 'adagg is ready');

  onShutdown(log, async () => {
    const steps = [() => gateway.close(), () => node.close(), ...servers.map((s) => () => s.stop())];
    for (const step of steps) await step().catch((err: unknown) => log.error({ err }, 'shutdown step failed'));
  });
}
