import { isIP } from 'node:net';
import type { Click } from './click.ts';
import { parseTime } from './time.ts';

export type RejectCode =
  | 'invalid_json'
  | 'missing_field'
  | 'invalid_field'
  | 'invalid_ip'
  | 'invalid_ts'
  | 'too_old'
  | 'in_future';

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

  if (isAbsent(ad_id)) return reject('missing_field', 'field ad_id is required');
  if (typeof ad_id !== 'string' || !AD_ID_RE.test(ad_id)) {
    return reject('invalid_field', `field ad_id must match ${AD_ID_SYNTAX}`);
  }

  if (isAbsent(ts)) return reject('missing_field', 'field ts is required');
  // parseTime passes floats and negatives through; a click time must be a whole, non-negative ms count.
  const tsMs = parseTime(ts);
  if (tsMs === undefined || !Number.isSafeInteger(tsMs) || tsMs < 0) {
    return reject('invalid_ts', 'field ts must be non-negative integer epoch milliseconds or an ISO-8601 string');
  }

  if (!isAbsent(user_id) && (typeof user_id !== 'string' || user_id.length < 1 || user_id.length > 256)) {
    return reject('invalid_field', 'field user_id must be a string of 1-256 characters');
  }
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
  if (typeof country === 'string') click.country = country.toUpperCase();

  // Unknown short string properties become attrs so extra configured dimensions can be aggregated.
  const attrs: Record<string, string> = {};
  let n = 0;
  for (const [k, v] of Object.entries(raw)) {
    if (n >= MAX_ATTRS) break;
    if (KNOWN.has(k) || k === '__proto__' || !ATTR_KEY.test(k)) continue;
    if (typeof v !== 'string' || v.length < 1 || v.length > 64) continue;
    attrs[k] = v;
    n++;
  }
  if (n > 0) click.attrs = attrs;

  return { ok: true, click };
}

export function parseJsonLine(line: string): { ok: true; value: unknown } | { ok: false; rejection: Rejection } {
  try {
    return { ok: true, value: JSON.parse(line) as unknown };
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    return { ok: false, rejection: { code: 'invalid_json', error: `invalid JSON: ${msg}` } };
  }
}
