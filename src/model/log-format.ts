import { createHash } from 'node:crypto';
import { parseStrictTime } from './iso-time.ts';
import type { Rejection } from './validate.ts';

/**
 * The plain log format, one click per line:
 *   [AdClickEvent] ad001, 2024-07-09 00:00:01, user-1, 207.148.22.22, USA
 * Fields: ad_id, ts (`YYYY-MM-DD HH:MM:SS` UTC, ISO-8601 or epoch ms, calendar-checked), user_id, ip, country.
 */
const PREFIX = '[AdClickEvent]';
const FIELDS = 5;

export function isLogLine(line: string): boolean {
  return line.trimStart().startsWith(PREFIX);
}

/**
 * Turns a log line into a raw click object for `validateClick`, which does all field validation.
 * An unparsable ts is kept as the original string so validation reports `invalid_ts`.
 */
export function parseLogLine(
  line: string,
  clickId: string,
): { ok: true; value: Record<string, unknown> } | { ok: false; rejection: Rejection } {
  const body = line.trimStart();
  if (!body.startsWith(PREFIX)) {
    return { ok: false, rejection: { code: 'invalid_field', error: `log line must start with ${PREFIX}` } };
  }
  const parts = body.slice(PREFIX.length).split(',').map((s) => s.trim());
  const [adId, ts, userId, ip, country] = parts;
  if (parts.length !== FIELDS || adId === undefined || ts === undefined) {
    return {
      ok: false,
      rejection: {
        code: 'invalid_field',
        error: `log line must have 5 comma-separated fields: ad_id, ts, user_id, ip, country; got ${parts.length}`,
      },
    };
  }
  const value: Record<string, unknown> = { click_id: clickId, ad_id: adId, ts: parseStrictTime(ts) ?? ts };
  // Empty optional fields mean "not known", not an invalid value.
  if (userId) value.user_id = userId;
  if (ip) value.ip = ip;
  if (country) value.country = country;
  return { ok: true, value };
}

/**
 * Log lines carry no click id; (file, byte offset) identifies a line stably, so re-reading a file
 * yields the same ids and deduplication makes replays idempotent.
 */
export function deriveClickId(fileIdentity: string, byteOffset: number): string {
  const h = createHash('sha256').update(fileIdentity).digest('hex').slice(0, 16);
  return `log:${h}:${byteOffset}`;
}
