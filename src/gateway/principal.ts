/**
 * Who made a request: the seam between authentication (src/gateway/auth/) and the routes that act
 * per caller (query-job quotas and ownership, WebSocket limits). Authentication sets it once per
 * request; routes only read it. With authentication off every request is {@link ANONYMOUS}.
 *
 * @example
 * const who = principalOf(req); // { name: 'billing-etl', scopes: Set {'read','jobs'} }
 * if (!who.scopes.has('jobs')) throw new AdaggError(ErrorCode.Forbidden, 'needs scope jobs');
 */
import type { FastifyRequest } from 'fastify';

/** What a token may do. `admin` implies every other scope. */
export const SCOPES = ['ingest', 'read', 'jobs', 'metrics', 'admin'] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  /** The token's name from ADAGG_TOKENS_FILE; `anonymous` when authentication is off. */
  readonly name: string;
  readonly scopes: ReadonlySet<Scope>;
}

/** The caller when authentication is off (ADAGG_AUTH=off): every scope. */
export const ANONYMOUS: Principal = Object.freeze({ name: 'anonymous', scopes: new Set<Scope>(SCOPES) });

const principals = new WeakMap<FastifyRequest, Principal>();

/** Set by the authentication hook, once per request. */
export function setPrincipal(req: FastifyRequest, p: Principal): void {
  principals.set(req, p);
}

/** The caller of `req` ({@link ANONYMOUS} when no authentication ran). */
export function principalOf(req: FastifyRequest): Principal {
  return principals.get(req) ?? ANONYMOUS;
}
