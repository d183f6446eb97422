import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AdaggError, ErrorCode } from '../errors.ts';
import { ANONYMOUS, principalOf } from './principal.ts';

/**
 * A rate limit on heavy queries, per token (@fastify/rate-limit). A `popular_ads` ranking reads
 * every minute of its window from every shard: a 7-day window cost 0.65 s of CPU, and 20 at once
 * pushed ingest latency to 11 s. Windows of at least `heavyQueryMinutes` count against the
 * caller's `heavyQueryRate` per `heavyQueryIntervalMs`; shorter ones are free. Over the rate: 429
 * `ADAGG_E_RATE_LIMITED` with `Retry-After` (seconds). The caller is the token; without
 * authentication, the client address.
 *
 * @example
 * await scope.register(heavyQueryLimit);
 * scope.get('/v1/ads/popular_ads', { config: heavyQueryConfig(o) }, handler);
 */

export interface HeavyQueryLimitOptions {
  /** A window of at least this many minutes is heavy. @default 60 */
  heavyQueryMinutes?: number | undefined;
  /** Heavy queries per caller per interval. @default 30 */
  heavyQueryRate?: number | undefined;
  /** @default 60000 */
  heavyQueryIntervalMs?: number | undefined;
}

/** Registers @fastify/rate-limit in `scope` for routes that ask for it ({@link heavyQueryConfig}) only. */
export async function heavyQueryLimit(scope: FastifyInstance): Promise<void> {
  // preHandler: after authentication (onRequest) named the caller and the schema checked `window`.
  await scope.register(rateLimit, { global: false, hook: 'preHandler' });
}

/** Whom a request is counted against: the token, or the address of an unauthenticated caller. */
function callerKey(req: FastifyRequest): string {
  const p = principalOf(req);
  return p === ANONYMOUS ? `ip:${req.ip}` : `token:${p.name}`;
}

/** The `window` query parameter as minutes (the schema defaults it to 1; `granularity` hour/day: hours/days); NaN when malformed. */
function windowOf(req: FastifyRequest): number {
  const q = req.query as Record<string, unknown> | undefined;
  const w = q?.window;
  const unit = q?.granularity === 'day' ? 1440 : q?.granularity === 'hour' ? 60 : 1;
  return typeof w === 'string' && /^\d+$/.test(w) ? Number(w) * unit : Number.NaN;
}

/** The route config that rate-limits a ranking route's heavy windows. */
export function heavyQueryConfig(o: HeavyQueryLimitOptions): { rateLimit: Record<string, unknown> } {
  const heavyMinutes = o.heavyQueryMinutes ?? 60;
  const max = o.heavyQueryRate ?? 30;
  const intervalMs = o.heavyQueryIntervalMs ?? 60_000;
  return {
    rateLimit: {
      max,
      timeWindow: intervalMs,
      keyGenerator: callerKey,
      // Light (or malformed, refused by the handler) windows are never counted.
      allowList: (req: FastifyRequest) => !(windowOf(req) >= heavyMinutes),
      addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
      errorResponseBuilder: (_req: FastifyRequest, ctx: { max: number; ttl: number }) =>
        new AdaggError(
          ErrorCode.RateLimited,
          `more than ${ctx.max} heavy queries (popular_ads windows of ${heavyMinutes} minutes or more) in ${intervalMs / 1000} s (ADAGG_HEAVY_QUERY_RATE); retry in ${Math.ceil(ctx.ttl / 1000)} s`,
          { details: { retryAfterMs: ctx.ttl } },
        ),
    },
  };
}
