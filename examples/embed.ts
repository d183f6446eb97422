/**
 * Embedding adagg: a runtime node (the shard actors) and the HTTP/WebSocket gateway in one process,
 * against NATS and Redis servers you run. In your project, import from 'adagg' instead of
 * '../src/index.ts'.
 *
 *   NATS_URL=nats://127.0.0.1:4222 REDIS_URL=redis://127.0.0.1:6379 node --import tsx examples/embed.ts
 *
 * Every other option comes from the ADAGG_* environment variables, or is passed in code.
 */
import { pathToFileURL } from 'node:url';
import {
  actorRegistry,
  actorWorkerEntry,
  AdaggError,
  compileOptions,
  createLogger,
  ErrorCode,
  GatewayService,
  optionsFromEnv,
  RuntimeEvents,
  RuntimeNode,
  type AdaggOptions,
} from '../src/index.ts';

export interface Embedded {
  /** The gateway's base URL, e.g. http://127.0.0.1:8080. */
  url: string;
  node: RuntimeNode;
  gateway: GatewayService;
  /** Stops the gateway, then the node (its actors commit their last state). Safe to call twice. */
  close(): Promise<void>;
}

/** Starts a runtime node and a gateway sharing one event bus (so /metrics shows both). */
export async function startEmbedded(
  natsUrl: string,
  redisUrl: string,
  options: AdaggOptions | Record<string, string> = {},
): Promise<Embedded> {
  // compileOptions checks every option once: a bad one throws ADAGG_E_BAD_OPTION naming it.
  const opts = { ...compileOptions(options), natsUrl, redisUrl };
  const log = createLogger('adagg-embed');
  const events = new RuntimeEvents();
  // actorRegistry brings the actor kinds; actorWorkerEntry is the module each worker thread runs
  // (options.workers threads, 0: actors on this thread).
  const node = new RuntimeNode('embedded', opts, { actors: actorRegistry, events, log, workerEntry: actorWorkerEntry });
  await node.startManaged();
  const gateway = new GatewayService(opts, { actors: actorRegistry, events, log, extraReady: () => ({ shards: node.running().size === opts.shards }) });
  let url: string;
  try {
    ({ url } = await gateway.start());
  } catch (err) {
    await gateway.close();
    await node.close();
    throw err;
  }
  let closing: Promise<void> | undefined;
  // The node closes even when the gateway's close fails.
  const close = (): Promise<void> => (closing ??= gateway.close().finally(() => node.close()));
  return { url, node, gateway, close };
}

// Run as a script: servers from NATS_URL / REDIS_URL, options from ADAGG_*, stop on Ctrl-C.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const env = optionsFromEnv();
  if (!env.natsUrl || !env.redisUrl) throw new AdaggError(ErrorCode.BadOption, 'set NATS_URL and REDIS_URL');
  const app = await startEmbedded(env.natsUrl, env.redisUrl, env);
  console.log(`adagg embedded: ${app.url}`);
  process.once('SIGINT', () => {
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        console.error(err);
        process.exit(1);
      },
    );
  });
}
