/**
 * Which scope each route needs: the one table authorization reads, keyed by method and fastify
 * route URL (`req.routeOptions.url`, the pattern, not the request path). It fails closed: a route
 * missing here needs `admin`, so a route added without an entry is locked, never open.
 *
 * @example
 * requiredScope('GET', '/v1/ads/popular_ads'); // 'read'
 * requiredScope('GET', '/v1/some/new/route');  // 'admin' (not in the table)
 */
import type { Scope } from '../principal.ts';

/** No token needed: liveness, readiness, the dashboard's files, CORS preflight. */
export const PUBLIC = 'public';
export type RouteAccess = Scope | typeof PUBLIC;

/** `METHOD url` → what the route needs. HEAD follows GET (fastify adds a HEAD route per GET). */
const ROUTES: ReadonlyMap<string, RouteAccess> = new Map<string, RouteAccess>([
  ['GET /healthz', PUBLIC],
  ['GET /readyz', PUBLIC],
  ['GET /', PUBLIC],
  ['GET /static/:file', PUBLIC],
  // @fastify/cors answers preflights in its hook; a preflight never carries credentials.
  ['OPTIONS *', PUBLIC],
  ['POST /v1/clicks', 'ingest'],
  ['GET /v1/ads/:ad_id/aggregated_count', 'read'],
  ['GET /v1/ads/popular_ads', 'read'],
  ['GET /v1/ads/:ad_id/invalid', 'read'],
  ['GET /v1/risk/offenders', 'read'],
  ['GET /v1/ws/popular_ads', 'read'],
  ['GET /v1/status', 'read'],
  ['GET /v1/reconciliations/:day', 'read'],
  ['GET /v1/audit', 'read'],
  ['GET /openapi.json', 'read'],
  ['GET /metrics', 'metrics'],
]);

/**
 * Route families by URL prefix, for every method: query jobs (submit, status, list, cancel and any
 * later job route) are all `jobs`, whatever their exact URL.
 */
const PREFIXES: ReadonlyArray<readonly [prefix: string, access: RouteAccess]> = [['/v1/queries', 'jobs']];

/** The scope a route needs, `public`, or `admin` for a route the table does not know. */
export function requiredScope(method: string, url: string): RouteAccess {
  const m = method === 'HEAD' ? 'GET' : method;
  const exact = ROUTES.get(`${m} ${url}`);
  if (exact !== undefined) return exact;
  for (const [prefix, access] of PREFIXES) {
    if (url === prefix || url.startsWith(`${prefix}/`)) return access;
  }
  return 'admin';
}
