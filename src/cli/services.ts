import os from 'node:os';
import { actorRegistry } from '../actors/index.ts';
import { AdaggError, ErrorCode } from '../errors.ts';
import { GatewayService } from '../gateway/gateway-service.ts';
import { compileOptions, optionsFromEnv, type CompiledOptions } from '../options.ts';
import { createLogger, type Logger } from '../runtime/logger.ts';
import { RuntimeNode } from '../runtime/runtime-node.ts';
import { cliModule } from './entry-points.ts';

type Connected = CompiledOptions & { natsUrl: string; redisUrl: string };

/** The module each actor worker thread runs (ADAGG_WORKERS > 0): it brings the actor registry. */
export const actorWorkerEntry: URL = cliModule('actor-worker');

/** Options from the environment; `adagg node` and `adagg gateway` need NATS_URL and REDIS_URL. */
export function connectedOptions(): Connected {
  const o = compileOptions(optionsFromEnv());
  if (!o.natsUrl || !o.redisUrl) {
    throw new AdaggError(ErrorCode.BadOption, 'NATS_URL and REDIS_URL must be set (a comma list of NATS servers for a cluster)');
  }
  return { ...o, natsUrl: o.natsUrl, redisUrl: o.redisUrl };
}

/** Stops `close` on SIGINT/SIGTERM, running it once, then exits. */
export function onShutdown(log: Logger, close: () => Promise<void>): void {
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/** `adagg node --id ID`: one runtime node (actors only) joining the cluster through placement. */
export async function runNode(id: string | undefined): Promise<void> {
  const o = connectedOptions();
  const nodeId = id ?? process.env.ADAGG_NODE_ID ?? `${os.hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_-]/g, '-');
  const log = createLogger('adagg-node');
  const node = new RuntimeNode(nodeId, o, { actors: actorRegistry, log, workerEntry: actorWorkerEntry });
  await node.startManaged();
  log.info({ node: nodeId, nats: o.natsUrl, workers: o.workers }, 'runtime node started');
  onShutdown(log, () => node.close());
}

/** `adagg gateway`: the HTTP/WebSocket gateway alone; it finds actors through NATS subjects. */
export async function runGateway(): Promise<void> {
  const o = connectedOptions();
  const log = createLogger('adagg-gateway');
  const gw = new GatewayService(o, { actors: actorRegistry, log });
  const { url } = await gw.start();
  log.info({ url }, 'gateway started');
  onShutdown(log, () => gw.close());
}
