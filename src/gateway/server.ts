import path from 'node:path';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import type { ClickIngest } from '../ingest/click-ingest.ts';
import type { Logger } from '../runtime/logger.ts';
import type { RuntimeEvents } from '../runtime/events.ts';
import { adaggAuth, type AuthPluginOptions } from './auth/auth-plugin.ts';
import { ConnectionLimiter, connectionBounds, httpTimeoutOptions, type ConnectionBounds } from './connection-limits.ts';
import { adaggClientErrorHandler, adaggFrameworkErrors, adaggHttp } from './http-plugin.ts';
import { httpMetrics } from './http-metrics.ts';
import { openApiRoutes } from './openapi.ts';
import { wsFeedRoutes, type RankingSource } from './ws-feeds.ts';
import type { QueryService } from './query-service.ts';
import type { QueryJobs } from './query-jobs.ts';
import { clickRoutes } from './routes/clicks.ts';
import { queryJobRoutes } from './routes/query-jobs.ts';
import { dashboardRoutes } from './routes/dashboard.ts';
import { countRoutes } from './routes/counts.ts';
import { riskRoutes } from './routes/risk.ts';
import { opsRoutes, type Readiness } from './routes/ops.ts';
import { reconciliationRoutes, type ReconciliationSource } from './routes/reconciliations.ts';
import { auditRoutes } from './routes/audit.ts';

/** Socket bounds, request timeouts and WebSocket limits not given take the option defaults. */
export interface GatewayOptions extends Partial<ConnectionBounds> {
  wsMaxSubscriptions?: number;
  wsHeartbeatMs?: number;
  topnDepth: number;
  maxLiveWindow: number;
  wsMaxBufferedBytes: number;
  wsSlowClientTimeoutMs: number;
  shards: number;
  dimensions: readonly string[];
  cubes: readonly string[];
  /** ADAGG_COUNTRY_ALPHA3: `country` filters read like ingested codes (`USA` → `US`). @default 'map' */
  countryAlpha3?: string;
  maxBodyBytes: number;
  maxLines: number;
  maxQueryMinutes: number;
  maxTopN: number;
  /** ADAGG_ARCHIVE_DIR: the audit log is read from its `audit/` folder (GET /v1/audit). @default './data/archive' */
  archiveDir?: string;
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
  /**
   * Authentication and the origin policy (src/gateway/auth/).
   * @default authentication off, same-origin browsers only
   */
  auth?: AuthPluginOptions;
  /** Stored reconciliation reports (GET /v1/reconciliations/{day}). @default none stored */
  reconciliations?: ReconciliationSource;
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
  const bounds = connectionBounds(o);
  const app: FastifyInstance = Fastify({
    loggerInstance: deps.log.child({}, { level }) as FastifyBaseLogger,
    bodyLimit: o.maxBodyBytes,
    frameworkErrors: adaggFrameworkErrors,
    // Node's own refusals (431, 408, malformed requests) answer {code, error} too.
    clientErrorHandler: adaggClientErrorHandler,
    // Path parameters up to 256 characters reach the route, so every valid ad id (128) is served
    // and a longer one is refused by its schema; the router answers 414 beyond.
    routerOptions: { maxParamLength: 256 },
    // Header, body and keep-alive timeouts (a timed-out request is answered 408 by the handler above).
    ...httpTimeoutOptions(bounds),
  });
  // Open sockets per client and in total, counted before node's HTTP parser sees them.
  new ConnectionLimiter(bounds).attach(app.server);
  // On the root, before any plugin: every request is measured, refused ones and 404s included.
  httpMetrics(app, deps.events);
  void app.register(adaggHttp, { maxBodyBytes: o.maxBodyBytes });
  // Before every route (and after adaggHttp, whose error handler its refusals use): each route
  // registered after it is behind the origin check and, when on, authentication.
  void app.register(adaggAuth, deps.auth ?? { mode: 'off', allowedOrigins: [] });
  // Before the routes: @fastify/swagger collects the routes registered after it.
  void app.register(openApiRoutes);
  void app.register(async (routes) => {
    wsFeedRoutes(routes, o, { rankings: deps.reducer, events: deps.events, log: deps.log });
    dashboardRoutes(routes);
    clickRoutes(routes, deps.ingest, o.maxLines);
    queryJobRoutes(routes, deps.queryJobs);
    countRoutes(routes, deps.queries, o);
    riskRoutes(routes, deps.queries, o);
    opsRoutes(routes, deps.queries, deps.registry, deps.ready, o.shards);
    reconciliationRoutes(routes, deps.reconciliations ?? (() => Promise.resolve(undefined)));
    auditRoutes(routes, path.resolve(o.archiveDir ?? './data/archive'));
  });
  return app;
}
