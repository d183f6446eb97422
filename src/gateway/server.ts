import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { ClickIngest } from '../ingest/click-ingest.ts';
import type { Logger } from '../runtime/logger.ts';
import type { RuntimeEvents } from '../runtime/events.ts';
import { adaggFrameworkErrors, adaggHttp } from './http-plugin.ts';
import { openApiRoutes } from './openapi.ts';
import { wsFeedRoutes, type RankingSource } from './ws-feeds.ts';
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
  /** The top-N reducer host (live rankings for the WebSocket feeds). */
  reducer: RankingSource;
  events: RuntimeEvents;
  ingest: ClickIngest;
  queries: QueryService;
  registry: Registry;
  ready: Readiness;
  log: Logger;
}

/**
 * Builds the HTTP gateway. Every error leaves as `{code, error}` with the status its code maps to
 * (adaggHttp, plus `frameworkErrors` for what fails before routing); `GET /openapi.json` documents
 * every route. Routes are registered as a plugin, loaded by `ready()` / `listen()`.
 */
export function buildGateway(o: GatewayOptions, deps: GatewayDeps): FastifyInstance {
  // Per-request logs at warn and above only (a line per request would dominate ingest CPU), and
  // never below the level of the logger handed in.
  const level = deps.log.levelVal > deps.log.levels.values.warn! ? deps.log.level : 'warn';
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.log.child({}, { level }) as FastifyBaseLogger,
    bodyLimit: o.maxBodyBytes,
    frameworkErrors: adaggFrameworkErrors,
    // Path parameters up to 256 characters reach the route, so every valid ad id (128) is served
    // and a longer one is refused by its schema; the router answers 414 beyond.
    routerOptions: { maxParamLength: 256 },
  });
  void app.register(adaggHttp, { maxBodyBytes: o.maxBodyBytes });
  // Before the routes: @fastify/swagger collects the routes registered after it.
  void app.register(openApiRoutes);
  void app.register(async (routes) => {
    wsFeedRoutes(routes, o, { rankings: deps.reducer, events: deps.events, log: deps.log });
    dashboardRoutes(routes);
    clickRoutes(routes, deps.ingest, o.maxLines);
    queryJobRoutes(routes, deps.queryJobs);
    countRoutes(routes, deps.queries, o);
    opsRoutes(routes, deps.queries, deps.registry, deps.ready, o.shards);
  });
  return app;
}
