import { isIP } from 'node:net';
import type { Click } from './click.ts';
import { normalizeCountry } from './country.ts';
import { MAX_TIME_MS, parseStrictTime } from './iso-time.ts';

export type RejectCode =
  | 'invalid_json'
  | 'missing_field'
  | 'invalid_field'
  | 'invalid_ip'
  | 'invalid_ts'
  | 'too_old'
  | 'in_future'
  | 'bad_encoding'
  | 'too_deep';

/** Every per-line code, for schemas and documentation. */
export const REJECT_CODES: readonly RejectCode[] = ['invalid_json', 'missing_field', 'invalid_field', 'invalid_ip', 'invalid_ts', 'too_old', 'in_future', 'bad_encoding', 'too_deep'];

/**
 * Deepest JSON nesting accepted in one click (a click itself is depth 1). Clicks are flat; the
 * bound keeps hostile lines from overflowing the stack of anything that walks or re-serialises a
 * value (JSON.stringify of a 20,000-deep array throws RangeError).
 */
export const MAX_JSON_DEPTH = 32;

/** `error` is a specific human message naming the offending field. */
export interface Rejection {
  code: RejectCode;
  error: string;
}

/** Clicks older than the correction horizon can no longer be folded into a window; far-future ones are clock bugs. */
export interface ValidationLimits {
  nowMs: number;
  correctionHorizonMs: number;
  maxFutureMs: number;
  /**
   * `map` (default): an assigned ISO 3166 alpha-3 country (`USA`) is stored as its alpha-2 code
   * (`US`), so `country=US` counts it; `keep`: stored as given, upper-cased (ADAGG_COUNTRY_ALPHA3).
   */
  countryAlpha3?: string;
}

export type Validated = { ok: true; click: Click } | { ok: false; rejection: Rejection };

/**
 * The syntax of an ad id, as written in error messages and API descriptions. The one definition of
 * it: the gateway's schemas, query jobs and the CLI use these constants.
 */
export const AD_ID_SYNTAX = '[A-Za-z0-9_.:-]{1,128}';
/** {@link AD_ID_SYNTAX} anchored: a RegExp source and a JSON Schema `pattern`. */
export const AD_ID_PATTERN = `^${AD_ID_SYNTAX}$`;
/** Whether a string is a valid ad id ({@link AD_ID_PATTERN}). */
export const AD_ID_RE = new RegExp(AD_ID_PATTERN);
const COUNTRY = /^[A-Za-z]{2,3}$/;
const ATTR_KEY = /^[A-Za-z0-9_]{1,32}$/;
const MAX_ATTRS = 16;
const KNOWN = new Set(['click_id', 'ad_id', 'ts', 'user_id', 'ip', 'country']);

const reject = (code: RejectCode, error: string): Validated => ({ ok: false, rejection: { code, error } });

// In a `u` regex a surrogate class matches only unpaired surrogates: pairs are one code point.
const LONE_SURROGATE = /[\ud800-\udfff]/u;

/**
 * Whether a string is well-formed UTF-16 (`String.prototype.isWellFormed`, not in the ES2023 lib).
 * A lone surrogate (JSON `"\ud800"`) has no UTF-8 form: encoding replaces it with U+FFFD, so two
 * distinct ids would become one.
 */
export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/** Every string a click keeps (click_id, user_id, attribute values) must be well-formed; ad_id, ip and country are ASCII by syntax. */
const loneSurrogate = (field: string): Validated => reject('bad_encoding', `field ${field} holds a lone UTF-16 surrogate (not valid Unicode)`);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

const isAbsent = (v: unknown): boolean => v === undefined || v === null;

export function validateClick(raw: unknown, limits: ValidationLimits): Validated {
  if (!isPlainObject(raw)) return reject('invalid_field', 'click must be a JSON object');

  const { click_id, ad_id, ts, user_id, ip, country } = raw;

  if (isAbsent(click_id)) return reject('missing_field', 'field click_id is required');
  if (typeof click_id !== 'string' || click_id.length < 1 || click_id.length > 128) {
    return reject('invalid_field', 'field click_id must be a string of 1-128 characters');
  }
  if (!isWellFormed(click_id)) return loneSurrogate('click_id');

  if (isAbsent(ad_id)) return reject('missing_field', 'field ad_id is required');
  if (typeof ad_id !== 'string' || !AD_ID_RE.test(ad_id)) {
    return reject('invalid_field', `field ad_id must match ${AD_ID_SYNTAX}`);
  }

  if (isAbsent(ts)) return reject('missing_field', 'field ts is required');
  // parseStrictTime passes fractions through; a click time must be a whole ms count.
  const tsMs = parseStrictTime(ts);
  if (tsMs === undefined || !Number.isSafeInteger(tsMs)) {
    return reject('invalid_ts', `field ts must be whole epoch milliseconds (0-${MAX_TIME_MS}) or an ISO-8601 date-time (calendar-checked, e.g. 2024-07-09T00:00:01Z)`);
  }

  if (!isAbsent(user_id) && (typeof user_id !== 'string' || user_id.length < 1 || user_id.length > 256)) {
    return reject('invalid_field', 'field user_id must be a string of 1-256 characters');
  }
  if (typeof user_id === 'string' && !isWellFormed(user_id)) return loneSurrogate('user_id');
  if (!isAbsent(ip) && (typeof ip !== 'string' || isIP(ip) === 0)) {
    return reject('invalid_ip', 'field ip must be a valid IPv4 or IPv6 address');
  }
  if (!isAbsent(country) && (typeof country !== 'string' || !COUNTRY.test(country))) {
    return reject('invalid_field', 'field country must be an ISO 3166 alpha-2 or alpha-3 code');
  }

  // Range checks last, so a structurally broken line reports its structural error first.
  if (tsMs < limits.nowMs - limits.correctionHorizonMs) {
    return reject('too_old', `field ts ${new Date(tsMs).toISOString()} is older than the correction horizon`);
  }
  if (tsMs > limits.nowMs + limits.maxFutureMs) {
    return reject('in_future', `field ts ${new Date(tsMs).toISOString()} is too far in the future`);
  }

  const click: Click = { click_id, ad_id, ts: tsMs };
  if (typeof user_id === 'string') click.user_id = user_id;
  if (typeof ip === 'string') click.ip = ip;
  if (typeof country === 'string') click.country = normalizeCountry(country, limits.countryAlpha3);

  // Unknown short string properties become attrs so extra configured dimensions can be aggregated.
  const attrs: Record<string, string> = {};
  let n = 0;
  for (const [k, v] of Object.entries(raw)) {
    if (n >= MAX_ATTRS) break;
    if (KNOWN.has(k) || k === '__proto__' || !ATTR_KEY.test(k)) continue;
    if (typeof v !== 'string' || v.length < 1 || v.length > 64) continue;
    if (!isWellFormed(v)) return loneSurrogate(k);
    attrs[k] = v;
    n++;
  }
  if (n > 0) click.attrs = attrs;

  return { ok: true, click };
}

/**
 * Whether a parsed JSON value nests deeper than `max` (objects and arrays; a scalar is depth 0).
 * Iterative, so the check itself cannot overflow the stack.
 */
export function nestsDeeperThan(value: unknown, max: number): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const stack: Array<[object, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (depth > max) return true;
    // for...in over JSON.parse output: own enumerable keys (array indices included), no allocation.
    for (const k in v) {
      const child = (v as Record<string, unknown>)[k];
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}

/** The refusal of a value nested deeper than {@link MAX_JSON_DEPTH}. */
export const TOO_DEEP: Rejection = { code: 'too_deep', error: `JSON nests deeper than ${MAX_JSON_DEPTH} levels` };

/**
 * Parses one NDJSON line. JSON.parse itself is iterative in V8 (a million-deep line parses), but a
 * value deeper than {@link MAX_JSON_DEPTH} is refused as `too_deep` so that nothing downstream
 * recurses into it.
 */
export function parseJsonLine(line: string): { ok: true; value: unknown } | { ok: false; rejection: Rejection } {
  let value: unknown;
  try {
    value = JSON.parse(line) as unknown;
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return { ok: false, rejection: { code: 'invalid_json', error: `invalid JSON: ${msg}` } };
  }
  if (nestsDeeperThan(value, MAX_JSON_DEPTH)) return { ok: false, rejection: TOO_DEEP };
  return { ok: true, value };
}
