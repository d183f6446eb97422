/**
 * Strict time parsing for everything a client sends (`ts` of a click, `at`/`from`/`to` of a
 * query): epoch milliseconds or a calendar-checked ISO-8601 date(-time). `Date.parse` alone is
 * lenient in ways that give wrong answers: it rolls `2024-02-30` over to 2 March and accepts
 * non-ISO forms such as `Tue, 09 Jul 2024 00:00:01 GMT+0100`, so both are refused here.
 *
 * @example
 * parseStrictTime('2024-07-09T02:00:01+02:00'); // Date.UTC(2024, 6, 9, 0, 0, 1)
 * parseStrictTime('2024-02-30T00:00:00Z');      // undefined
 */

/**
 * The latest time accepted, 9999-12-31T23:59:59.999Z: the end of four-digit ISO years, well
 * inside what `Date` can represent (8.64e15), so a parsed time always has an ISO form.
 */
export const MAX_TIME_MS = 253_402_300_799_999;

const DIGITS = /^\d{1,16}$/;
/**
 * `YYYY-MM-DD`, optionally `T` (or a space) `HH:MM`, optional `:SS`, optional fraction (`.` or
 * `,`), optional zone `Z`, `±HH`, `±HH:MM` or `±HHMM`. No zone means UTC.
 */
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?(?:([zZ])|([+-])(\d{2})(?::?(\d{2}))?)?)?$/;

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** Parses an ISO-8601 string strictly; undefined when the form or the calendar is wrong. */
export function parseIsoTime(s: string): number | undefined {
  const m = ISO.exec(s);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, sec, frac, z, sign, oh, om] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = h === undefined ? 0 : Number(h);
  const minute = mi === undefined ? 0 : Number(mi);
  const second = sec === undefined ? 0 : Number(sec);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  const ms = frac === undefined ? 0 : Number(frac.slice(0, 3).padEnd(3, '0'));
  let offsetMin = 0;
  if (z === undefined && sign !== undefined) {
    const offH = Number(oh);
    const offM = om === undefined ? 0 : Number(om);
    if (offH > 23 || offM > 59) return undefined;
    offsetMin = (sign === '-' ? -1 : 1) * (offH * 60 + offM);
  }
  // Date.UTC maps years 0-99 onto 1900-1999; setUTCFullYear keeps the year as written.
  const t = new Date(Date.UTC(2000, month - 1, day, hour, minute, second, ms));
  t.setUTCFullYear(year);
  const out = t.getTime() - offsetMin * 60_000;
  return out >= 0 && out <= MAX_TIME_MS ? out : undefined;
}

/**
 * A time from a client: a whole or fractional number of epoch milliseconds, a string of digits
 * (epoch milliseconds), or a strict ISO-8601 string ({@link parseIsoTime}). Undefined for anything
 * else, for negative times and for times past {@link MAX_TIME_MS}. Callers that need whole
 * milliseconds check `Number.isSafeInteger` themselves.
 */
export function parseStrictTime(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 && v <= MAX_TIME_MS ? v : undefined;
  if (typeof v !== 'string' || v.length === 0 || v.length > 64) return undefined;
  if (DIGITS.test(v)) {
    const n = Number(v);
    return n <= MAX_TIME_MS ? n : undefined;
  }
  return parseIsoTime(v);
}
