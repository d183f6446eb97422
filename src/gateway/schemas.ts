/**
 * JSON Schema fragments shared by the gateway's route schemas. Fastify validates query strings,
 * path parameters and bodies with them (errors leave as 400 `ADAGG_E_BAD_PARAM`, see
 * schema-errors.ts) and @fastify/swagger turns them into `/openapi.json`.
 *
 * Schemas use only plain keywords (no union `type` arrays, no custom keywords) so that fastify's
 * Ajv compiles them in strict mode without warnings.
 */

import { AD_ID_PATTERN, AD_ID_SYNTAX } from '../model/validate.ts';

/** Epoch milliseconds or an ISO-8601 date(-time); empty means absent. The value is parsed by parseTime. */
export const TIME_PATTERN = '^(\\d+|\\d{4}-\\d{2}-\\d{2}.*)?$';
/** Digits only; empty means absent (the default applies). The range is checked by the route. */
export const WHOLE_NUMBER_PATTERN = '^\\d*$';
/** An attribute a query job may filter on. */
export const ATTRIBUTE_PATTERN = '^[A-Za-z0-9_]{1,32}$';
/** A risk rule's name (ADAGG_RISK_RULES). */
export const RULE_NAME_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';

/** What a failed `pattern` means, in the words of the error message (keyed by the pattern). */
export const PATTERN_HINTS: ReadonlyMap<string, string> = new Map([
  [AD_ID_PATTERN, `must match ${AD_ID_SYNTAX}`],
  [TIME_PATTERN, 'is not an ISO-8601 time or epoch milliseconds'],
  [WHOLE_NUMBER_PATTERN, 'is not a whole number'],
  [ATTRIBUTE_PATTERN, 'is not a filterable attribute (user_id, ip, country, ad_id or an extra attribute [A-Za-z0-9_]{1,32})'],
  [RULE_NAME_PATTERN, 'is not a rule name ([A-Za-z0-9_.-]{1,64})'],
]);

/** A time query parameter. */
export function timeParam(description: string): Record<string, unknown> {
  return { type: 'string', maxLength: 64, pattern: TIME_PATTERN, description: `${description}: ISO-8601 (no zone = UTC) or epoch milliseconds, floored to the minute` };
}

/**
 * A whole-number query parameter; `min`..`max` is checked by the route (intParam), which also
 * applies the default (the schema's `default` fills in the same value).
 */
export function wholeNumberParam(description: string, def: number, min: number, max: number): Record<string, unknown> {
  return { type: 'string', pattern: WHOLE_NUMBER_PATTERN, default: String(def), description: `${description}, ${min}..${max}` };
}

/** `ad_id` as a path parameter. */
export const adIdParams = {
  type: 'object',
  required: ['ad_id'],
  properties: { ad_id: { type: 'string', pattern: AD_ID_PATTERN, description: 'the ad' } },
} as const;

/** The value of one filter query parameter of the REST queries. */
export const filterValue = { type: 'string', minLength: 1, maxLength: 64 } as const;

/**
 * Filter parameters: each configured dimension is documented by name; any other parameter is
 * taken as a filter too and answered with ADAGG_E_FILTER_NOT_PREAGGREGATED.
 */
export function filterParams(
  dimensions: readonly string[],
  cubes: readonly string[],
  value: Record<string, unknown> = filterValue,
): Record<string, Record<string, unknown>> {
  return Object.fromEntries(
    dimensions.map((d) => {
      const inCubes = cubes.filter((c) => c.split('+').includes(d));
      const cubeNote = inCubes.length > 0 ? `; may be combined as in the configured cubes ${inCubes.join(', ')}` : '';
      return [d, { ...value, description: `filter on the pre-aggregated dimension ${d}${d === 'country' ? ' (upper-cased)' : ''}${cubeNote}` }];
    }),
  );
}

/** Invalid clicks by rule name: every rule ever published (0 included), `{}` without rules. */
export const invalidByRule = {
  type: 'object',
  additionalProperties: { type: 'integer' },
  description: 'invalid clicks by risk rule name: every rule ever published (ADAGG_RISK_RULES), 0 included; {} without rules',
} as const;

/** Every minute of a count query's range, in order. */
export const countMinuteList = {
  type: 'array',
  items: {
    type: 'object',
    properties: {
      minute: { type: 'string' },
      count: { type: 'integer', description: 'valid (billable) clicks' },
      invalid: { type: 'integer', description: 'clicks the risk rules took (not in count)' },
      invalid_by_rule: invalidByRule,
      final: { type: 'boolean', description: 'false: an open (provisional) minute' },
      state: {
        type: 'string',
        enum: ['open', 'closed', 'sealed'],
        description:
          'open: provisional (after the shard closed minutes); closed: final, still correctable by late clicks, hot-ad reports or invalid-click verdicts (each change published on the corrections feed); sealed: past the correction horizon, only a recompute changes it',
      },
    },
  },
} as const;

/** `granularity` of the count queries (params.ts granularityParam reads it). */
export const granularityQueryParam = {
  type: 'string',
  enum: ['', 'minute', 'hour', 'day'],
  description: 'minute (default: the answer lists `minutes`), hour or day (UTC; the answer lists `buckets`, ranges up to 400 days)',
} as const;

/** Every UTC hour or day of a count query's range, in order (granularity=hour|day). */
export const bucketList = {
  type: 'array',
  description: 'present with granularity=hour or day: one bucket per UTC hour or day of the range',
  items: {
    type: 'object',
    properties: {
      start: { type: 'string', description: 'ISO start of the hour or day' },
      count: { type: 'integer', description: 'valid (billable) clicks' },
      invalid: { type: 'integer', description: 'clicks the risk rules took (not in count)' },
      invalid_by_rule: invalidByRule,
      state: { type: 'string', enum: ['open', 'closed', 'sealed'], description: 'the least final state of the bucket\'s minutes' },
    },
  },
} as const;
