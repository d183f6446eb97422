export const MINUTE_MS = 60_000;

/** Minute index (minutes since the epoch, UTC) of an epoch-ms timestamp. */
export function minuteOf(ts: number): number {
  return Math.floor(ts / MINUTE_MS);
}

export function minuteStartMs(minute: number): number {
  return minute * MINUTE_MS;
}

export function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

const DIGITS = /^-?\d+$/;

/**
 * Parses a time given as epoch milliseconds (digits) or an ISO-8601 string.
 * Returns undefined when it is neither. A date-time without zone is read as UTC.
 */
export function parseTime(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) ? v : undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > 64) return undefined;
  if (DIGITS.test(v)) {
    const n = Number(v);
    return Number.isSafeInteger(n) ? n : undefined;
  }
  if (!/^\d{4}-\d{2}-\d{2}/.test(v)) return undefined;
  // ISO without an offset: Date parses date-times without zone as local time; force UTC.
  const hasZone = /([zZ]|[+-]\d{2}:?\d{2})$/.test(v);
  const hasTime = v.length > 10;
  const ms = Date.parse(hasTime && !hasZone ? `${v.replace(' ', 'T')}Z` : v);
  return Number.isFinite(ms) ? ms : undefined;
}
