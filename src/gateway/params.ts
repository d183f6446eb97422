import { AdaggError, ErrorCode } from '../errors.ts';
import { minuteOf, parseTime } from '../model/time.ts';
import type { Filter } from './query-service.ts';

export type Query = Record<string, string | string[] | undefined>;

function badParam(name: string, msg: string): AdaggError {
  return new AdaggError(ErrorCode.BadParam, `parameter ${name}: ${msg}`, { details: { param: name } });
}

function single(q: Query, name: string): string | undefined {
  const v = q[name];
  if (Array.isArray(v)) throw badParam(name, 'given more than once');
  return v;
}

/** A time parameter (ISO-8601 or epoch ms), floored to its minute index. */
export function minuteParam(q: Query, name: string, required: boolean): number | undefined {
  const v = single(q, name);
  if (v === undefined || v === '') {
    if (required) throw badParam(name, 'is required (ISO-8601 or epoch milliseconds)');
    return undefined;
  }
  const ms = parseTime(v);
  if (ms === undefined || ms < 0) throw badParam(name, `"${v}" is not an ISO-8601 time or epoch milliseconds`);
  return minuteOf(ms);
}

export function intParam(q: Query, name: string, def: number, min: number, max: number): number {
  const v = single(q, name);
  if (v === undefined || v === '') return def;
  if (!/^\d+$/.test(v)) throw badParam(name, `"${v}" is not a whole number`);
  const n = Number(v);
  if (n < min || n > max) throw badParam(name, `must be between ${min} and ${max}`);
  return n;
}

/**
 * The filter of a count query: any parameter other than the reserved ones names an attribute.
 * Only configured (pre-aggregated) dimensions are answered synchronously; anything else gets a
 * specific error instead of a wrong number.
 */
export function filterParam(q: Query, reserved: readonly string[], dimensions: readonly string[]): Filter | undefined {
  const filters = Object.keys(q).filter((k) => !reserved.includes(k));
  if (filters.length === 0) return undefined;
  if (filters.length > 1) {
    throw new AdaggError(
      ErrorCode.FilterNotPreaggregated,
      `filter combination ${filters.join('+')} is not pre-aggregated; configured dimensions: ${dimensions.join(', ')}`,
      { details: { filters } },
    );
  }
  const dim = filters[0]!;
  if (!dimensions.includes(dim)) {
    throw new AdaggError(
      ErrorCode.FilterNotPreaggregated,
      `filter ${dim} is not a pre-aggregated dimension (ADAGG_DIMENSIONS=${dimensions.join(',')})`,
      { details: { filter: dim } },
    );
  }
  const raw = single(q, dim);
  if (raw === undefined || raw === '' || raw.length > 64) throw badParam(dim, 'must be a non-empty value of at most 64 characters');
  return { dim, value: dim === 'country' ? raw.toUpperCase() : raw };
}

export function checkRange(fromMinute: number, toMinute: number, maxMinutes: number): void {
  if (toMinute <= fromMinute) throw badParam('to', 'must be at least one minute after from');
  if (toMinute - fromMinute > maxMinutes) {
    throw new AdaggError(ErrorCode.RangeTooLarge, `range of ${toMinute - fromMinute} minutes exceeds ${maxMinutes} (ADAGG_MAX_QUERY_MINUTES)`);
  }
}
