import os from 'node:os';
import { actorRegistry } from '../actors/index.ts';
import { AdaggError, ErrorCode } from '../errors.ts';
import { GatewayService } from '../gateway/gateway-service.ts';
import { compileOptions, optionsFromEnv, type CompiledOptions } from '../options.ts';
import { createLogger, type Logger } from '../runtime/logger.ts';
import { createMetrics } from '../runtime/metrics.ts';
import { MetricsServer } from '../runtime/metrics-server.ts';
import { RuntimeNode } from '../runtime/runtime-node.ts';
import { cliModule } from './entry-points.ts';
import { readRiskRules, riskRulesOptions, startRiskRules } from './risk-rules-loader.ts';
import { Shutdown } from './shutdown.ts';
import { redisUrlOf } from '../runtime/redis-connect.ts';

type Connected = CompiledOptions & { natsUrl: string; redisUrl: string };

/** The module each actor worker thread runs (ADAGG_WORKERS > 0): it brings the actor registry. */
export const actorWorkerEntry: URL = cliModule('actor-worker');

/** Options from the environment; `adagg node` and `adagg gateway` need NATS_URL and REDIS_URL (or REDIS_SENTINELS). */
export function connectedOptions(): Connected {
  const o = compileOptions(optionsFromEnv());
  const redisUrl = redisUrlOf(o);
  if (!o.natsUrl || !redisUrl) {
    throw new AdaggError(ErrorCode.BadOption, 'NATS_URL and REDIS_URL (or REDIS_SENTINELS) must be set (a comma list of NATS servers for a cluster)');
  }
  return { ...o, natsUrl: o.natsUrl, redisUrl };
}

/**
 * Runs `close` on SIGINT/SIGTERM or an uncaught error, once, within `timeoutMs`, then exits
 * (src/cli/shutdown.ts: deadline, a second signal forces exit, the last-resort handler).
 */
export function onShutdown(log: Logger, close: () => Promise<void>, timeoutMs: number): Shutdown {
  const shutdown = new Shutdown(log, { timeoutMs }).install();
  shutdown.add('service', close);
  return shutdown;
}

/** `adagg node --id ID`: one runtime node (actors only) joining the cluster through placement. */
export async function runNode(id: string | undefined): Promise<void> {
  const nodeId = id ?? process.env.ADAGG_NODE_ID ?? `${os.hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, '-');
  const log = createLogger('adagg-node');
  // ADAGG_RISK_RULES turns hot-ad splitting off; a bad rules file fails the start here.
  const o = riskRulesOptions(connectedOptions(), log);
  const riskRules = await readRiskRules(o);
  const node = new RuntimeNode(nodeId, o, { actors: actorRegistry, log, workerEntry: actorWorkerEntry });
  // Its actors' events (worker threads included) feed the node's own /metrics (ADAGG_METRICS_PORT, 0: off).
  const metrics = o.metricsPort > 0 ? new MetricsServer(
          createMetrics(node.events),
          // Ready once the node has joined and runs its actors (placement gives it shards from then on).
          { port: o.metricsPort, host: o.metricsHost, ready: () => ({ ok: node.state === 'running', checks: { node: node.state === 'running' } }) },
          log,
        ) : undefined;
  // Installed before the start: a signal or an uncaught error during it still closes the node.
  const shutdown = onShutdown(log, () => node.close(), o.shutdownTimeoutMs);
  if (metrics) {
    shutdown.add('metrics', () => metrics.close());
    // Up before the actors: a node catching up after a restart is scraped (its lag seen) meanwhile.
    // A taken port costs the metrics, never the counting: the node runs on and Prometheus sees it
    // down (the AdaggNodeDown alert), with this log line saying why.
    await metrics.start().then(
      ({ url }) => log.info({ node: nodeId, url: `${url}/metrics` }, 'metrics served'),
      (err: unknown) => log.error({ node: nodeId, err }, 'metrics not served'),
    );
  }
  // Every node publishes the rules at its start (the same version twice is a no-op, at once deduplicated by JetStream).
  await startRiskRules(o, riskRules, log);
  await node.startManaged();
  log.info({ node: nodeId, nats: o.natsUrl, workers: o.workers }, 'runtime node started');
}

/**
 * SIGHUP re-reads ADAGG_TOKENS_FILE when one is in use (a bad file is logged and the old tokens
 * stay). Without one nothing is installed, so a hangup keeps its default meaning.
 */
export function reloadTokensOnHangup(gateway: Pick<GatewayService, 'reloadTokens'>, o: Pick<CompiledOptions, 'auth' | 'tokensFile'>, log: Logger): void {
  if (o.auth !== 'on' || o.tokensFile === undefined) return;
  process.on('SIGHUP', () => {
    log.info({ file: o.tokensFile }, 'SIGHUP: reloading bearer tokens');
    void gateway.reloadTokens();
  });
}

/** `adagg gateway`: the HTTP/WebSocket gateway alone; it finds actors through NATS subjects. */
export async function runGateway(): Promise<void> {
  const o = connectedOptions();
  const log = createLogger('adagg-gateway');
  const gw = new GatewayService(o, { actors: actorRegistry, log });
  onShutdown(log, () => gw.close(), o.shutdownTimeoutMs);
  const { url } = await gw.start();
  reloadTokensOnHangup(gw, o, log);
  log.info({ url }, 'gateway started');
}
