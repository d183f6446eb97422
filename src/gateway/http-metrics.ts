import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { RuntimeEvents } from '../runtime/events.ts';

/** Methods reported by name; anything else (fastify accepts many) is `other`, so the label stays bounded. */
const METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * The route a request matched, as registered (`/v1/ads/:ad_id/aggregated_count`), never the raw
 * URL: a label per ad id or query string would grow without bound. Requests that matched no
 * route (404s, refusals before routing) share `unmatched`.
 */
export function routeLabel(req: FastifyRequest): string {
  return req.routeOptions.url ?? 'unmatched';
}

/**
 * Reports every answered request as an `http` runtime event (route pattern, method, status,
 * seconds), which the metrics turn into the request duration histogram and the error counter.
 * Added on the root instance before any plugin, so every route, the 404 handler and refusals of
 * the auth hooks are all measured.
 */
export function httpMetrics(app: FastifyInstance, events: RuntimeEvents): void {
  app.addHook('onResponse', (req, reply, done) => {
    events.emit('http', {
      route: routeLabel(req),
      method: METHODS.has(req.method) ? req.method : 'other',
      status: reply.statusCode,
      seconds: reply.elapsedTime / 1000,
    });
    done();
  });
}
