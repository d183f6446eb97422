import type { FastifyInstance } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { checkRange, filterParam, intParam, minuteParam, type Query } from '../params.ts';
import type { QueryService } from '../query-service.ts';

const AD_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

export interface CountRouteOptions {
  dimensions: readonly string[];
  cubes: readonly string[];
  maxQueryMinutes: number;
  maxTopN: number;
}

export function countRoutes(app: FastifyInstance, queries: QueryService, o: CountRouteOptions): void {
  app.get<{ Params: { ad_id: string }; Querystring: Query }>('/v1/ads/:ad_id/aggregated_count', async (req) => {
    const adId = req.params.ad_id;
    if (!AD_ID.test(adId)) throw new AdaggError(ErrorCode.BadParam, 'parameter ad_id: must match [A-Za-z0-9_.:-]{1,128}');
    const q = req.query;
    const from = minuteParam(q, 'from', true)!;
    const to = minuteParam(q, 'to', true)!;
    checkRange(from, to, o.maxQueryMinutes);
    return queries.adCount(adId, from, to, filterParam(q, ['from', 'to'], o.dimensions, o.cubes));
  });

  app.get<{ Querystring: Query }>('/v1/ads/popular_ads', async (req) => {
    const q = req.query;
    const n = intParam(q, 'count', 10, 1, o.maxTopN);
    const window = intParam(q, 'window', 1, 1, o.maxQueryMinutes);
    const at = minuteParam(q, 'at', false);
    return queries.popular(n, window, at, filterParam(q, ['count', 'window', 'at'], o.dimensions, o.cubes));
  });
}
