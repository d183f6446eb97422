import { AdaggError, ErrorCode } from '../errors.ts';
import { CUBE_SEPARATOR } from '../model/click.ts';
import { MAX_TIME_MS, parseStrictTime } from '../model/iso-time.ts';
import { minuteOf } from '../model/time.ts';
import type { Filter } from './query-service.ts';
import { normalizeCountry } from '../model/country.ts';

/**
 * Query parameters to values. The HTTP routes' schemas (schemas.ts) already refused a repeated,
 * missing or malformed parameter; these functions do what a schema cannot (parse a time to its
 * minute, ranges that come from the options, map filters onto configured dimensions) and check the
 * form again for callers without a schema (the WebSocket `subscribe` frames).
 */
export type Query = Record<string, string | string[] | undefined>;

function badParam(name: string, msg: string): AdaggError {
  return new AdaggError(ErrorCode.BadParam, `parameter ${name}: ${msg}`, { details: { param: name } });
}

function single(q: Query, name: string): string | undefined {
  // Own properties only: `constructor` or `toString` must not be found on a prototype.
  const v = Object.hasOwn(q, name) ? q[name] : undefined;
  if (Array.isArray(v)) throw badParam(name, 'given more than once');
  return v;
}

/**
 * A time parameter, floored to its minute index: epoch milliseconds (0 to 9999-12-31) or a strict
 * ISO-8601 date(-time) (`2024-02-30` and `... GMT+0100` are refused, not rolled over or guessed).
 */
export function minuteParam(q: Query, name: string, required: boolean): number | undefined {
  const v = single(q, name);
  if (v === undefined || v === '') {
    if (required) throw badParam(name, 'is required (ISO-8601 or epoch milliseconds)');
    return undefined;
  }
  const ms = parseStrictTime(v);
  if (ms === undefined) throw badParam(name, `"${v.slice(0, 64)}" is not an ISO-8601 time or epoch milliseconds (0-${MAX_TIME_MS})`);
  return minuteOf(ms);
}

export function intParam(q: Query, name: string, def: number, min: number, max: number): number {
  const v = single(q, name);
  if (v === undefined || v === '') return def;
  if (!/^\d+$/.test(v)) throw badParam(name, `"${v.slice(0, 64)}" is not a whole number`);
  const n = Number(v);
  if (n < min || n > max) throw badParam(name, `must be between ${min} and ${max}`);
  return n;
}

const SCAN_HINT = 'use POST /v1/queries to answer it with a scan of the raw stream';

/**
 * The filter of a count query: any parameter other than the reserved ones names an attribute.
 * Only configured dimensions and cubes (pre-aggregated) are answered synchronously; anything else
 * gets a specific error pointing at the job API instead of a wrong number. Values are collected in
 * a null-prototype object, so `__proto__=US` is a filter named `__proto__` (refused), never a
 * prototype assignment that silently drops it and answers the unfiltered count.
 */
export function filterParam(
  q: Query,
  reserved: readonly string[],
  dimensions: readonly string[],
  cubes: readonly string[] = [],
  countryAlpha3: string = 'map',
): Filter | undefined {
  const keys = Object.keys(q).filter((k) => !reserved.includes(k));
  if (keys.length === 0) return undefined;
  const values = Object.create(null) as Record<string, string>;
  for (const k of keys) {
    const raw = single(q, k);
    if (raw === undefined || raw === '' || raw.length > 64) throw badParam(k, 'must be a non-empty value of at most 64 characters');
    // Stored countries are alpha-2 (USA → US at ingest, ADAGG_COUNTRY_ALPHA3): a filter is read the same way.
    values[k] = k === 'country' ? normalizeCountry(raw, countryAlpha3) : raw;
  }
  return filterFromRecord(values, dimensions, cubes);
}

/**
 * Maps `{country: 'US', device: 'mobile'}` onto a configured dimension or cube, or throws. Only own
 * keys count; pass a null-prototype object (or JSON.parse output) so a `__proto__` key is a key.
 */
export function filterFromRecord(values: Record<string, string>, dimensions: readonly string[], cubes: readonly string[]): Filter | undefined {
  const keys = Object.keys(values);
  if (keys.length === 0) return undefined;
  if (keys.length === 1 && dimensions.includes(keys[0]!)) return { dim: keys[0]!, value: values[keys[0]!]! };
  const label = (k: string): string => k.slice(0, 64);
  const cube = cubes.find((c) => {
    const parts = c.split('+');
    return parts.length === keys.length && parts.every((p) => keys.includes(p));
  });
  if (cube) return { dim: cube, value: cube.split('+').map((p) => values[p]!).join(CUBE_SEPARATOR) };
  const what = keys.length === 1 ? `filter ${label(keys[0]!)}` : `filter combination ${keys.slice(0, 8).map(label).join('+')}`;
  throw new AdaggError(
    ErrorCode.FilterNotPreaggregated,
    `${what} is not pre-aggregated (ADAGG_DIMENSIONS=${dimensions.join(',')}${cubes.length ? `, ADAGG_CUBES=${cubes.join(',')}` : ''}); ${SCAN_HINT}`,
    { details: { filters: keys.slice(0, 8) } },
  );
}

/** The inverse of filterFromRecord, for echoing a filter back to clients. */
export function filterToRecord(f: Filter | undefined): Record<string, string> | null {
  if (!f) return null;
  const dims = f.dim.split('+');
  const vals = f.value.split(CUBE_SEPARATOR);
  return Object.fromEntries(dims.map((d, i) => [d, vals[i] ?? '']));
}

export function checkRange(fromMinute: number, toMinute: number, maxMinutes: number): void {
  if (toMinute <= fromMinute) throw badParam('to', 'must be at least one minute after from');
  if (toMinute - fromMinute > maxMinutes) {
    throw new AdaggError(ErrorCode.RangeTooLarge, `range of ${toMinute - fromMinute} minutes exceeds ${maxMinutes} (ADAGG_MAX_QUERY_MINUTES)`);
  }
}

/** The `granularity` parameter of the count queries: `minute` (default), `hour` or `day`. */
export function granularityParam(q: Query): 'minute' | 'hour' | 'day' {
  const v = single(q, 'granularity');
  if (v === undefined || v === '' || v === 'minute') return 'minute';
  if (v === 'hour' || v === 'day') return v;
  throw badParam('granularity', `"${v.slice(0, 64)}" is not minute, hour or day`);
}

/** Longest range (minutes) of an hour or day query: 400 days. */
export const MAX_BUCKET_RANGE_MINUTES = 400 * 1440;

/**
 * The range of an hour or day query, aligned to whole buckets: `from` floored to the start of its
 * UTC hour/day, `to` raised to the end of the bucket it falls in (unless already on a boundary).
 */
export function bucketRange(fromMinute: number, toMinute: number, unit: number): { from: number; to: number } {
  if (toMinute <= fromMinute) throw badParam('to', 'must be at least one minute after from');
  const from = Math.floor(fromMinute / unit) * unit;
  const to = Math.ceil(toMinute / unit) * unit;
  if (to - from > MAX_BUCKET_RANGE_MINUTES) {
    throw new AdaggError(ErrorCode.RangeTooLarge, `range of ${(to - from) / 1440} days exceeds 400 days (hour and day granularity)`, {
      details: { maxMinutes: MAX_BUCKET_RANGE_MINUTES },
    });
  }
  return { from, to };
}
