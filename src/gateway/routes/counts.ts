import type { FastifyInstance, FastifySchema } from 'fastify';
import { ErrorCode } from '../../errors.ts';
import { heavyQueryConfig, heavyQueryLimit, type HeavyQueryLimitOptions } from '../heavy-query-limit.ts';
import { errorResponses } from '../openapi.ts';
import { bucketRange, checkRange, filterParam, granularityParam, intParam, MAX_BUCKET_RANGE_MINUTES, minuteParam, type Query } from '../params.ts';
import type { Filter, QueryService } from '../query-service.ts';
import { adIdParams, bucketList, countMinuteList, filterParams, filterValue, granularityQueryParam, invalidByRule, timeParam, wholeNumberParam } from '../schemas.ts';
import { UNIT_MINUTES } from '../tiered-reads.ts';

export interface CountRouteOptions extends HeavyQueryLimitOptions {
  dimensions: readonly string[];
  cubes: readonly string[];
  /** ADAGG_COUNTRY_ALPHA3: how `country` filter values are read. @default 'map' */
  countryAlpha3?: string;
  maxQueryMinutes: number;
  maxTopN: number;
}

const rankedAds = { type: 'array', items: { type: 'object', properties: { ad_id: { type: 'string' }, count: { type: 'integer' } } } };
/** Errors of a query answered from the shard actors and Redis. */
// Answers read shards over NATS and closed minutes from Redis: either may be unavailable.
export const SHARD_ERRORS = [ErrorCode.ShardUnavailable, ErrorCode.MailboxFull, ErrorCode.RedisUnavailable] as const;

// Any parameter but the named ones is a filter: documented for the configured dimensions, checked
// for form by the schema, and mapped onto a dimension or cube (or refused) by filterParam.

/** `?from&to` and the filters of an ad's count query (aggregated_count, invalid). */
export function adRangeQuery(o: CountRouteOptions): Record<string, unknown> {
  return {
    type: 'object',
    required: ['from', 'to'],
    properties: { from: timeParam('range start, inclusive'), to: timeParam('range end, exclusive'), ...filterParams(o.dimensions, o.cubes) },
    additionalProperties: filterValue,
  };
}

/** An ad's range and filter, checked (range bounds, pre-aggregated filter). `reserved`: parameters that are not filters. */
export function adRange(q: Query, o: CountRouteOptions, reserved: readonly string[] = ['from', 'to']): { from: number; to: number; filter: Filter | undefined } {
  const from = minuteParam(q, 'from', true)!;
  const to = minuteParam(q, 'to', true)!;
  checkRange(from, to, o.maxQueryMinutes);
  return { from, to, filter: filterParam(q, reserved, o.dimensions, o.cubes, o.countryAlpha3) };
}

function adCountSchema(o: CountRouteOptions): FastifySchema {
  const schema = adBreakdownSchema(
    o,
    "An ad's clicks per minute (or per UTC hour or day) over [from, to)",
    '`count` is the valid (billable) count; `invalid` and `invalid_by_rule` are the clicks the risk rules (ADAGG_RISK_RULES) took, for the range and for each minute. ' +
      'With `granularity=hour` or `day` the answer has `granularity` and `buckets` (one per UTC hour or day: `start`, `count`, `invalid`, `invalid_by_rule`, `state`) instead of `minutes`; `from` is floored and `to` raised to whole buckets, and ranges up to 400 days are allowed. ' +
      'Archived hours (ADAGG_HOT_RETENTION) are read from the aggregate archive, later minutes from the shards and Redis: each minute from one of them, so totals across the boundary are exact.',
    { granularity: { type: 'string', enum: ['hour', 'day'], description: 'present with granularity=hour or day' } },
  );
  const qs = schema.querystring as { properties: Record<string, unknown> };
  qs.properties = { ...qs.properties, granularity: granularityQueryParam };
  const ok = (schema.response as Record<number, { properties: Record<string, unknown> }>)[200]!;
  ok.properties = { ...ok.properties, buckets: bucketList };
  return schema;
}

/**
 * The schema of an ad's per-minute breakdown (aggregated_count, and /invalid with `extra` fields
 * after `invalid`): valid count, invalid clicks by rule, the minutes.
 */
export function adBreakdownSchema(o: CountRouteOptions, summary: string, description: string, extra: Record<string, unknown> = {}): FastifySchema {
  return {
    summary,
    description,
    tags: ['queries'],
    params: adIdParams,
    querystring: adRangeQuery(o),
    response: {
      200: {
        description: "every minute of the range, in order; final: false marks an open minute; state: open, closed or sealed; watermark and sealed_through are the owning shard's",
        type: 'object',
        properties: {
          ad_id: { type: 'string' },
          from: { type: 'string' },
          to: { type: 'string' },
          count: { type: 'integer', description: 'valid (billable) clicks' },
          invalid: { type: 'integer', description: 'clicks the risk rules took (not in count)' },
          ...extra,
          invalid_by_rule: invalidByRule,
          minutes: countMinuteList,
          watermark: { type: 'string', nullable: true },
          sealed_through: {
            type: 'string',
            nullable: true,
            description: "ISO start of the owning shard's last sealed minute (every minute up to it is sealed); null: none yet",
          },
        },
      },
      ...errorResponses([ErrorCode.BadParam, ErrorCode.RangeTooLarge, ErrorCode.FilterNotPreaggregated, ...SHARD_ERRORS]),
    },
  };
}

function popularSchema(o: CountRouteOptions): FastifySchema {
  return {
    summary: 'The ads with most clicks in a window of minutes',
    description: `Ordered by count descending, then ad_id ascending. Exact. A window of ${o.heavyQueryMinutes ?? 60} minutes or more is heavy: rate-limited per token (429 ADAGG_E_RATE_LIMITED with Retry-After), and when all its minutes are closed its answer is shared and cached until the next minute closes (a correction to a closed minute shows from then on).`,
    tags: ['queries'],
    querystring: {
      type: 'object',
      properties: {
        count: wholeNumberParam('how many ads', 10, 1, o.maxTopN),
        window: { ...wholeNumberParam('window length in minutes', 1, 1, o.maxQueryMinutes), description: `window length in minutes (1..${o.maxQueryMinutes}), or in hours (1..9600) / days (1..400) with granularity` },
        at: timeParam('window end, exclusive (default: the end of the latest minute closed by every shard)'),
        granularity: { ...granularityQueryParam, description: 'unit of `window`: minute (default), hour or day; the ranking covers [at − window units, at), minute-exact' },
        ...filterParams(o.dimensions, o.cubes),
      },
      additionalProperties: filterValue,
    },
    response: {
      200: { description: 'the ranking of [from, to)', type: 'object', properties: { from: { type: 'string' }, to: { type: 'string' }, ads: rankedAds } },
      ...errorResponses([ErrorCode.BadParam, ErrorCode.FilterNotPreaggregated, ErrorCode.RateLimited, ...SHARD_ERRORS]),
    },
  };
}

/**
 * The count queries. Their schemas check each parameter's form (a time, a whole number, an ad id,
 * a filter value, each given once); the handlers check what a schema cannot: the ranges that come
 * from the options, `from < to`, and whether the filter is pre-aggregated. Heavy rankings are
 * rate-limited per token (heavy-query-limit.ts), in a scope of their own.
 */
export function countRoutes(parent: FastifyInstance, queries: QueryService, o: CountRouteOptions): void {
  void parent.register(async (app) => {
    await heavyQueryLimit(app);
    routes(app, queries, o);
  });
}

function routes(app: FastifyInstance, queries: QueryService, o: CountRouteOptions): void {
  app.get<{ Params: { ad_id: string }; Querystring: Query }>('/v1/ads/:ad_id/aggregated_count', { schema: adCountSchema(o) }, async (req) => {
    const q = req.query;
    const granularity = granularityParam(q);
    if (granularity === 'minute') {
      const { from, to, filter } = adRange(q, o, ['from', 'to', 'granularity']);
      return queries.adCount(req.params.ad_id, from, to, filter);
    }
    const { from, to } = bucketRange(minuteParam(q, 'from', true)!, minuteParam(q, 'to', true)!, UNIT_MINUTES[granularity]);
    const filter = filterParam(q, ['from', 'to', 'granularity'], o.dimensions, o.cubes, o.countryAlpha3);
    return queries.adCountBuckets(req.params.ad_id, from, to, filter, granularity);
  });

  app.get<{ Querystring: Query }>('/v1/ads/popular_ads', { schema: popularSchema(o), config: heavyQueryConfig(o) }, async (req) => {
    const q = req.query;
    const n = intParam(q, 'count', 10, 1, o.maxTopN);
    const unit = UNIT_MINUTES[granularityParam(q)];
    const window = intParam(q, 'window', 1, 1, unit === 1 ? o.maxQueryMinutes : MAX_BUCKET_RANGE_MINUTES / unit);
    const at = minuteParam(q, 'at', false);
    return queries.popular(n, window * unit, at, filterParam(q, ['count', 'window', 'at', 'granularity'], o.dimensions, o.cubes, o.countryAlpha3));
  });
}
