/**
 * The refusals of authentication in /openapi.json: every route lists 403
 * ADAGG_E_ORIGIN_NOT_ALLOWED, and every non-public one 401 ADAGG_E_UNAUTHENTICATED and 403
 * ADAGG_E_FORBIDDEN with the scope it needs, added to the route's schema as it is registered.
 */
import type { RouteOptions } from 'fastify';
import { ErrorCode } from '../../errors.ts';
import { errorBodySchema } from '../openapi.ts';
import { PUBLIC, requiredScope } from './route-scopes.ts';

const ORIGIN = `${ErrorCode.OriginNotAllowed}: a browser page of an origin other than the gateway's own or ADAGG_ALLOWED_ORIGINS`;

/** Adds the auth refusals to a route's documented responses (before @fastify/swagger reads them). */
export function documentAuth(route: RouteOptions): void {
  const methods = [route.method].flat().map(String);
  const method = methods.find((m) => m !== 'HEAD');
  if (method === undefined || route.schema === undefined) return;
  const access = requiredScope(method, route.url);
  const response = (route.schema.response ?? {}) as Record<string, unknown>;
  const add = (status: number, description: string): void => {
    if (response[status] === undefined) response[status] = { ...errorBodySchema, description };
  };
  if (access === PUBLIC) {
    add(403, ORIGIN);
  } else {
    add(401, `${ErrorCode.Unauthenticated}: no bearer token, or one ADAGG_TOKENS_FILE does not list (with WWW-Authenticate: Bearer); only when ADAGG_AUTH=on`);
    add(403, `${ErrorCode.Forbidden}: the token lacks scope ${access}; ${ORIGIN}`);
  }
  route.schema.response = response;
}
