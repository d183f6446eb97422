import { AdaggError, ErrorCode } from '../errors.ts';
import { dimensionValue, type Click } from '../model/click.ts';
import { minuteOf, parseTime } from '../model/time.ts';
import { AD_ID_PATTERN, AD_ID_RE, AD_ID_SYNTAX } from '../model/validate.ts';
import { ATTRIBUTE_PATTERN, TIME_PATTERN } from './schemas.ts';

/**
 * A query job request (`POST /v1/queries`): its JSON Schema (the route validates the body with it
 * and /openapi.json shows it) and {@link parseQueryJobRequest}, which turns a body into a
 * {@link QueryJobSpec}. The parser checks everything again, so a spec is sound also when built
 * outside HTTP; it alone does what a schema cannot: times to minutes, `from < to`, the range limit.
 */

export type QueryJobKind = 'aggregated_count' | 'popular_ads';

/**
 * A validated job request. `filter` values are compared exactly (`country` upper-cased). `filter`
 * has a null prototype: a key such as `constructor` or `toString` is an attribute name like any
 * other, never a property inherited from Object.prototype.
 */
export type QueryJobSpec =
  | { kind: 'aggregated_count'; adId: string; fromMinute: number; toMinute: number; filter: Record<string, string> }
  | { kind: 'popular_ads'; count: number; fromMinute: number; toMinute: number; filter: Record<string, string> };

export interface QueryJobLimits {
  maxRangeMinutes: number;
  maxTopN: number;
}

const ATTR = new RegExp(ATTRIBUTE_PATTERN);
const MAX_FILTERS = 16;
const MAX_VALUE_LENGTH = 256;
const DEFAULT_COUNT = 10;
/**
 * Attributes that are not filters: click_id is unique, ts is the range, and no click carries an
 * attribute named `__proto__` (ingest drops it), so a filter on it could only ever be ignored or
 * match nothing; it is refused rather than silently dropped.
 */
const NOT_FILTERS = ['click_id', 'ts', '__proto__'];
const FIELDS: Record<QueryJobKind, readonly string[]> = {
  aggregated_count: ['kind', 'ad_id', 'from', 'to', 'filter'],
  popular_ads: ['kind', 'count', 'from', 'to', 'filter'],
};

function filterSchema(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'object',
    nullable: true,
    maxProperties: MAX_FILTERS,
    propertyNames: { type: 'string', pattern: ATTRIBUTE_PATTERN, not: { enum: NOT_FILTERS }, ...extra },
    additionalProperties: { type: 'string', minLength: 1, maxLength: MAX_VALUE_LENGTH },
    description: 'attribute → value, all must match (user_id, ip, country (upper-cased), ad_id for popular_ads, or an extra attribute)',
  };
}

const timeField = (what: string): Record<string, unknown> => ({
  description: `${what}: ISO-8601 (no zone = UTC) or epoch milliseconds, floored to the minute`,
  anyOf: [
    { type: 'string', maxLength: 64, pattern: TIME_PATTERN },
    { type: 'number', minimum: 0 },
  ],
});

/**
 * The body schema of `POST /v1/queries`. The field set depends on `kind`, checked first (`allOf`
 * runs before the properties) so that the other errors speak of the right kind.
 */
export function queryJobBodySchema(limits: QueryJobLimits): Record<string, unknown> {
  const isAdCount = { required: ['kind'], properties: { kind: { const: 'aggregated_count' } } };
  return {
    type: 'object',
    description: 'A query job: aggregated_count (with ad_id) or popular_ads (with count), over a range of at most maxRangeMinutes.',
    required: ['kind', 'from', 'to'],
    allOf: [
      { required: ['kind'], properties: { kind: { enum: ['aggregated_count', 'popular_ads'] } } },
      {
        if: isAdCount,
        then: { required: ['ad_id'], propertyNames: { enum: FIELDS.aggregated_count }, properties: { filter: filterSchema({ not: { enum: [...NOT_FILTERS, 'ad_id'] } }) } },
        else: { propertyNames: { enum: FIELDS.popular_ads } },
      },
    ],
    properties: {
      kind: { type: 'string', enum: ['aggregated_count', 'popular_ads'] },
      ad_id: { type: 'string', pattern: AD_ID_PATTERN, description: 'aggregated_count only (required there): the ad' },
      count: { type: 'integer', minimum: 1, maximum: limits.maxTopN, description: `popular_ads only: how many ads (default ${DEFAULT_COUNT})` },
      from: timeField('range start, inclusive'),
      to: timeField('range end, exclusive'),
      filter: filterSchema(),
    },
    examples: [{ kind: 'aggregated_count', ad_id: 'ad001', from: '2026-11-22T03:00:00Z', to: '2026-11-22T04:00:00Z', filter: { user_id: 'u42' } }],
  };
}

function badField(field: string, msg: string): AdaggError {
  return new AdaggError(ErrorCode.BadParam, `field ${field}: ${msg}`, { details: { param: field } });
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function minuteField(body: Record<string, unknown>, name: string): number {
  const v = body[name];
  if (v === undefined || v === null || v === '') throw badField(name, 'is required (ISO-8601 or epoch milliseconds)');
  const ms = typeof v === 'number' || typeof v === 'string' ? parseTime(v) : undefined;
  if (ms === undefined || ms < 0) throw badField(name, `${JSON.stringify(v)} is not an ISO-8601 time or epoch milliseconds`);
  return minuteOf(ms);
}

/**
 * Validates a POST /v1/queries body. Throws ADAGG_E_BAD_PARAM naming the field, or
 * ADAGG_E_RANGE_TOO_LARGE. Times are floored to minutes like the REST API.
 */
export function parseQueryJobRequest(body: unknown, limits: QueryJobLimits): QueryJobSpec {
  if (!isPlainObject(body)) throw new AdaggError(ErrorCode.BadParam, 'body must be a JSON object', { details: { param: 'body' } });
  const kind = body.kind;
  if (kind !== 'aggregated_count' && kind !== 'popular_ads') {
    throw badField('kind', 'must be "aggregated_count" or "popular_ads"');
  }
  for (const k of Object.keys(body)) {
    if (FIELDS[kind].includes(k)) continue;
    const hint = k === 'ad_id' ? ' (restrict popular_ads to an ad with filter.ad_id)' : '';
    throw badField(k, `is not a field of a ${kind} query${hint}`);
  }
  const fromMinute = minuteField(body, 'from');
  const toMinute = minuteField(body, 'to');
  if (toMinute <= fromMinute) throw badField('to', 'must be at least one minute after from');
  if (toMinute - fromMinute > limits.maxRangeMinutes) {
    throw new AdaggError(
      ErrorCode.RangeTooLarge,
      `range of ${toMinute - fromMinute} minutes exceeds ${limits.maxRangeMinutes}, the longest query job range (24 h over the raw stream; ADAGG_JOB_MAX_ARCHIVE_RANGE_DAYS with the raw archive on)`,
      { details: { maxRangeMinutes: limits.maxRangeMinutes } },
    );
  }
  const filter = parseFilter(body.filter, kind);
  if (kind === 'aggregated_count') {
    const adId = body.ad_id;
    if (typeof adId !== 'string' || !AD_ID_RE.test(adId)) throw badField('ad_id', `is required and must match ${AD_ID_SYNTAX}`);
    return { kind, adId, fromMinute, toMinute, filter };
  }
  let count = DEFAULT_COUNT;
  if (body.count !== undefined) {
    const c = body.count;
    if (typeof c !== 'number' || !Number.isInteger(c) || c < 1 || c > limits.maxTopN) {
      throw badField('count', `must be a whole number between 1 and ${limits.maxTopN}`);
    }
    count = c;
  }
  return { kind, count, fromMinute, toMinute, filter };
}

function parseFilter(raw: unknown, kind: QueryJobKind): Record<string, string> {
  if (raw === undefined || raw === null) return Object.create(null) as Record<string, string>;
  if (!isPlainObject(raw)) throw badField('filter', 'must be an object of attribute → value');
  const keys = Object.keys(raw);
  if (keys.length > MAX_FILTERS) throw badField('filter', `has more than ${MAX_FILTERS} attributes`);
  // Null prototype: assigning `out.__proto__` or reading `out.constructor` never reaches Object.prototype.
  const out = Object.create(null) as Record<string, string>;
  for (const k of keys) {
    if (k === '__proto__') throw badField('filter.__proto__', 'is not a filterable attribute (clicks never carry an attribute named __proto__)');
    if (!ATTR.test(k) || NOT_FILTERS.includes(k)) {
      throw badField(`filter.${k}`, 'is not a filterable attribute (user_id, ip, country, ad_id or an extra attribute [A-Za-z0-9_]{1,32})');
    }
    if (k === 'ad_id' && kind === 'aggregated_count') throw badField('filter.ad_id', 'give the ad as the top-level ad_id');
    const v = raw[k];
    if (typeof v !== 'string' || v.length < 1 || v.length > MAX_VALUE_LENGTH) {
      throw badField(`filter.${k}`, `must be a string of 1-${MAX_VALUE_LENGTH} characters`);
    }
    out[k] = k === 'country' ? v.toUpperCase() : v;
  }
  return out;
}

/** Dimensions a click holds as fields of its own (the rest are attrs). */
const BUILT_IN: ReadonlySet<string> = new Set(['country', 'user_id', 'ip']);

/**
 * A predicate for "matches every filter": `ad_id` against the click's ad, the built-in dimensions by
 * dimensionValue, and any other attribute only as an own property of the click's attrs (so a filter
 * named `constructor` or `toString` compares that attribute, never an inherited method).
 */
export function clickMatcher(filter: Readonly<Record<string, string>>): (c: Click) => boolean {
  const entries = Object.entries(filter);
  const valueOf = (c: Click, k: string): string | undefined => {
    if (k === 'ad_id') return c.ad_id;
    if (BUILT_IN.has(k)) return dimensionValue(c, k);
    return c.attrs !== undefined && Object.hasOwn(c.attrs, k) ? c.attrs[k] : undefined;
  };
  return (c) => {
    for (const [k, v] of entries) {
      if (valueOf(c, k) !== v) return false;
    }
    return true;
  };
}


/** The ad a job is restricted to (its shard is the only one scanned), if any. */
export function jobAdId(spec: QueryJobSpec): string | undefined {
  return spec.kind === 'aggregated_count' ? spec.adId : spec.filter.ad_id;
}
