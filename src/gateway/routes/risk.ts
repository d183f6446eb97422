import type { FastifyInstance, FastifySchema } from 'fastify';
import { AdaggError, ErrorCode } from '../../errors.ts';
import { errorResponses } from '../openapi.ts';
import { intParam, type Query } from '../params.ts';
import type { QueryService } from '../query-service.ts';
import { adIdParams, countMinuteList, invalidByRule, RULE_NAME_PATTERN, wholeNumberParam } from '../schemas.ts';
import { adBreakdownSchema, adRange, SHARD_ERRORS, type CountRouteOptions } from './counts.ts';

/** Offenders a request may ask for. */
const MAX_OFFENDERS = 1000;
const OFFENDERS_PARAMS = ['rule', 'window', 'limit'];

function adInvalidSchema(o: CountRouteOptions): FastifySchema {
  return adBreakdownSchema(
    o,
    "An ad's invalid clicks per minute and by risk rule over [from, to)",
    'The clicks the risk rules (ADAGG_RISK_RULES) took, beside the valid (billable) `count`; same parameters, filters and minutes as aggregated_count. invalid_share = invalid / (count + invalid), 0 without clicks.',
    { invalid_share: { type: 'number', description: 'invalid / (count + invalid); 0 without clicks' } },
  );
}

function offendersSchema(o: CountRouteOptions): FastifySchema {
  return {
    summary: 'The key values with most invalid clicks charged to a risk rule',
    description:
      "Over the `window` minutes ending with the current (open) one, summed across shards: the rule's key values (an ip_block rule: the ip), ordered by invalid descending, then the key's JSON ascending. The actors keep clicks for the correction horizon (ADAGG_CORRECTION_HORIZON_MS): a longer window is refused.",
    tags: ['queries'],
    querystring: {
      type: 'object',
      required: ['rule'],
      properties: {
        rule: { type: 'string', pattern: RULE_NAME_PATTERN, description: 'a risk rule name (every rule ever published is known)' },
        window: wholeNumberParam('window length in minutes, at most the correction horizon', 10, 1, o.maxQueryMinutes),
        limit: wholeNumberParam('how many key values', 10, 1, MAX_OFFENDERS),
      },
    },
    response: {
      200: {
        description: 'the top offenders of [from, to)',
        type: 'object',
        properties: {
          rule: { type: 'string' },
          window: { type: 'integer' },
          from: { type: 'string' },
          to: { type: 'string' },
          offenders: {
            type: 'array',
            items: {
              type: 'object',
              properties: {
                key: { type: 'object', additionalProperties: { type: 'string' }, description: "the rule's key fields and their values" },
                invalid: { type: 'integer' },
              },
            },
          },
        },
      },
      ...errorResponses([ErrorCode.BadParam, ErrorCode.WindowBeyondHorizon, ErrorCode.UnknownRule, ...SHARD_ERRORS]),
    },
  };
}

/**
 * The invalid-click queries (issue 14): an ad's invalid clicks by rule, and a rule's top offending
 * key values. Both read what the shard actors count (query-service.ts, risk-fields.ts).
 */
export function riskRoutes(app: FastifyInstance, queries: QueryService, o: CountRouteOptions): void {
  app.get<{ Params: { ad_id: string }; Querystring: Query }>('/v1/ads/:ad_id/invalid', { schema: adInvalidSchema(o) }, async (req) => {
    const { from, to, filter } = adRange(req.query, o);
    return queries.adInvalid(req.params.ad_id, from, to, filter);
  });

  app.get<{ Querystring: Query }>('/v1/risk/offenders', { schema: offendersSchema(o) }, async (req) => {
    const q = req.query;
    // No filters here: a misspelt parameter is refused, not silently ignored.
    const unknown = Object.keys(q).find((k) => !OFFENDERS_PARAMS.includes(k));
    if (unknown !== undefined) throw new AdaggError(ErrorCode.BadParam, `parameter ${unknown.slice(0, 64)}: unknown (rule, window, limit)`, { details: { param: unknown.slice(0, 64) } });
    const rule = q.rule;
    if (typeof rule !== 'string') throw new AdaggError(ErrorCode.BadParam, 'parameter rule: is required', { details: { param: 'rule' } });
    const window = intParam(q, 'window', 10, 1, o.maxQueryMinutes);
    const limit = intParam(q, 'limit', 10, 1, MAX_OFFENDERS);
    return queries.offenders(rule, window, limit);
  });
}
