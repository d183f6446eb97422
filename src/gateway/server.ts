import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { ClickIngest } from '../ingest/click-ingest.ts';
import type { Logger } from '../runtime/logger.ts';
import type { RuntimeEvents } from '../runtime/events.ts';
import type { TopNReducerHost } from '../runtime/topn-reducer-host.ts';
import { toHttpError } from './error-status.ts';
import { wsFeedRoutes } from './ws-feeds.ts';
import type { QueryService } from './query-service.ts';
import type { QueryJobs } from './query-jobs.ts';
import { clickRoutes } from './routes/clicks.ts';
import { queryJobRoutes } from './routes/query-jobs.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { countRoutes } from './routes/counts.ts';
import { opsRoutes, type Readiness } from './routes/ops.ts';

export interface GatewayOptions {
  topnDepth: number;
  maxLiveWindow: number;
  wsMaxBufferedBytes: number;
  wsSlowClientTimeoutMs: number;
  shards: number;
  dimensions: readonly string[];
  cubes: readonly string[];
  maxBodyBytes: number;
  maxLines: number;
  maxQueryMinutes: number;
  maxTopN: number;
}

export interface GatewayDeps {
  queryJobs: QueryJobs;
  reducer: TopNReducerHost;
  events: RuntimeEvents;
  ingest: ClickIngest;
  queries: QueryService;
  registry: Registry;
  ready: Readiness;
  log: Logger;
}

/** Builds the HTTP gateway. Every error leaves as `{code, error}` with the status its code maps to. */
export function buildGateway(o: GatewayOptions, deps: GatewayDeps): FastifyInstance {
  // Per-request logs at warn and above only: a line per request would dominate ingest CPU.
  const app: FastifyInstance = Fastify({ loggerInstance: deps.log.child({}, { level: 'warn' }) as FastifyBaseLogger, bodyLimit: o.maxBodyBytes });
  // Bodies are parsed by adagg itself (NDJSON and JSON alike) so each bad line gets its own error.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: o.maxBodyBytes }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err, req, reply) => {
    const e = toHttpError(err);
    if (e.status >= 500) req.log.error({ err, url: req.url }, 'request failed');
    void reply.code(e.status).send({ code: e.code, error: e.error });
  });
  app.setNotFoundHandler((req, reply) => {
    void reply.code(404).send({ code: 'ADAGG_E_NOT_FOUND', error: `no route ${req.method} ${req.url.split('?')[0]}` });
  });
  const closeFeeds = wsFeedRoutes(app, deps.reducer, o, deps.log, deps.events);
  app.addHook('onClose', async () => closeFeeds());
  dashboardRoutes(app);
  clickRoutes(app, deps.ingest, o.maxLines);
  queryJobRoutes(app, deps.queryJobs);
  countRoutes(app, deps.queries, o);
  opsRoutes(app, deps.queries, deps.registry, deps.ready, o.shards);
  return app;
}
