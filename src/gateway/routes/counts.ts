import type { FastifyInstance, FastifySchema } from 'fastify';
import { ErrorCode } from '../../errors.ts';
import { errorResponses } from '../openapi.ts';
import { checkRange, filterParam, intParam, minuteParam, type Query } from '../params.ts';
import type { QueryService } from '../query-service.ts';
import { adIdParams, filterParams, filterValue, timeParam, wholeNumberParam } from '../schemas.ts';

export interface CountRouteOptions {
  dimensions: readonly string[];
  cubes: readonly string[];
  maxQueryMinutes: number;
  maxTopN: number;
}

const minuteList = {
  type: 'array',
  items: {
    type: 'object',
    properties: {
      minute: { type: 'string' },
      count: { type: 'integer' },
      final: { type: 'boolean', description: 'false: an open (provisional) minute' },
    },
  },
};
const rankedAds = { type: 'array', items: { type: 'object', properties: { ad_id: { type: 'string' }, count: { type: 'integer' } } } };
/** Errors of a query answered from the shard actors and Redis. */
const SHARD_ERRORS = [ErrorCode.ShardUnavailable, ErrorCode.MailboxFull] as const;

// Any parameter but the named ones is a filter: documented for the configured dimensions, checked
// for form by the schema, and mapped onto a dimension or cube (or refused) by filterParam.

function adCountSchema(o: CountRouteOptions): FastifySchema {
  return {
    summary: "An ad's clicks per minute over [from, to)",
    tags: ['queries'],
    params: adIdParams,
    querystring: {
      type: 'object',
      required: ['from', 'to'],
      properties: { from: timeParam('range start, inclusive'), to: timeParam('range end, exclusive'), ...filterParams(o.dimensions, o.cubes) },
      additionalProperties: filterValue,
    },
    response: {
      200: {
        description: "every minute of the range, in order; final: false marks an open minute; watermark is the owning shard's",
        type: 'object',
        properties: {
          ad_id: { type: 'string' },
          from: { type: 'string' },
          to: { type: 'string' },
          count: { type: 'integer' },
          minutes: minuteList,
          watermark: { type: 'string', nullable: true },
        },
      },
      ...errorResponses([ErrorCode.BadParam, ErrorCode.RangeTooLarge, ErrorCode.FilterNotPreaggregated, ...SHARD_ERRORS]),
    },
  };
}

function popularSchema(o: CountRouteOptions): FastifySchema {
  return {
    summary: 'The ads with most clicks in a window of minutes',
    description: 'Ordered by count descending, then ad_id ascending. Exact.',
    tags: ['queries'],
    querystring: {
      type: 'object',
      properties: {
        count: wholeNumberParam('how many ads', 10, 1, o.maxTopN),
        window: wholeNumberParam('window length in minutes', 1, 1, o.maxQueryMinutes),
        at: timeParam('window end, exclusive (default: the end of the latest minute closed by every shard)'),
        ...filterParams(o.dimensions, o.cubes),
      },
      additionalProperties: filterValue,
    },
    response: {
      200: { description: 'the ranking of [from, to)', type: 'object', properties: { from: { type: 'string' }, to: { type: 'string' }, ads: rankedAds } },
      ...errorResponses([ErrorCode.BadParam, ErrorCode.FilterNotPreaggregated, ...SHARD_ERRORS]),
    },
  };
}

/**
 * The count queries. Their schemas check each parameter's form (a time, a whole number, an ad id,
 * a filter value, each given once); the handlers check what a schema cannot: the ranges that come
 * from the options, `from < to`, and whether the filter is pre-aggregated.
 */
export function countRoutes(app: FastifyInstance, queries: QueryService, o: CountRouteOptions): void {
  app.get<{ Params: { ad_id: string }; Querystring: Query }>('/v1/ads/:ad_id/aggregated_count', { schema: adCountSchema(o) }, async (req) => {
    const q = req.query;
    const from = minuteParam(q, 'from', true)!;
    const to = minuteParam(q, 'to', true)!;
    checkRange(from, to, o.maxQueryMinutes);
    return queries.adCount(req.params.ad_id, from, to, filterParam(q, ['from', 'to'], o.dimensions, o.cubes));
  });

  app.get<{ Querystring: Query }>('/v1/ads/popular_ads', { schema: popularSchema(o) }, async (req) => {
    const q = req.query;
    const n = intParam(q, 'count', 10, 1, o.maxTopN);
    const window = intParam(q, 'window', 1, 1, o.maxQueryMinutes);
    const at = minuteParam(q, 'at', false);
    return queries.popular(n, window, at, filterParam(q, ['count', 'window', 'at'], o.dimensions, o.cubes));
  });
}
