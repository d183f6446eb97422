import { isUtf8 } from 'node:buffer';
import { AdaggError, ErrorCode } from '../errors.ts';
import { MAX_JSON_DEPTH, nestsDeeperThan, parseJsonLine, TOO_DEEP, type Rejection } from '../model/validate.ts';
import type { IngestItem } from './click-ingest.ts';

const NDJSON_TYPES = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/json-seq', 'text/plain', '']);

/** The refusal of a line that is not valid UTF-8 (its bytes would be replaced, so distinct ids could collide). */
const BAD_UTF8: Rejection = { code: 'bad_encoding', error: 'line is not valid UTF-8' };

const NL = 0x0a;

/**
 * Splits a POST body into records. NDJSON: one click per line (blank lines skipped, numbering
 * keeps counting them so `line` matches the client's file); each line must be valid UTF-8 on its
 * own (`bad_encoding` otherwise, the other lines unaffected). JSON: an array of clicks (line =
 * 1-based index) or one click object. Throws ADAGG_E_TOO_MANY_LINES past `maxLines`.
 *
 * The body is taken as bytes: decoding it to a string first would turn every invalid byte into
 * U+FFFD and make click ids that differ only there equal.
 */
export function parseBody(body: Buffer | string, contentType: string | undefined, maxLines: number): IngestItem[] {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json') return parseJsonBody(body, maxLines);
  if (!NDJSON_TYPES.has(type)) {
    throw new AdaggError(ErrorCode.UnsupportedMediaType, `content-type ${type.slice(0, 64)} is not supported; use application/x-ndjson or application/json`);
  }
  return parseNdjson(body, maxLines);
}

/** NDJSON lines of a string or bytes (see {@link parseBody}). */
export function parseNdjson(body: Buffer | string, maxLines: number): IngestItem[] {
  // Valid UTF-8 throughout (the usual case): decode once and split the string.
  if (typeof body === 'string') return parseNdjsonText(body, maxLines);
  if (isUtf8(body)) return parseNdjsonText(body.toString('utf8'), maxLines);
  return parseNdjsonBytes(body, maxLines);
}

function tooMany(maxLines: number): AdaggError {
  return new AdaggError(ErrorCode.TooManyLines, `body has more than ${maxLines} clicks (ADAGG_MAX_LINES)`);
}

function item(line: number, text: string): IngestItem {
  const p = parseJsonLine(text);
  return p.ok ? { line, value: p.value, raw: text } : { line, rejection: p.rejection, raw: text };
}

function parseNdjsonText(body: string, maxLines: number): IngestItem[] {
  const items: IngestItem[] = [];
  let line = 0;
  let start = 0;
  while (start <= body.length) {
    let end = body.indexOf('\n', start);
    if (end < 0) end = body.length;
    line++;
    const text = body.slice(start, end).trim();
    start = end + 1;
    if (text.length === 0) continue;
    if (items.length >= maxLines) throw tooMany(maxLines);
    items.push(item(line, text));
  }
  return items;
}

/** The slow path: some line is not UTF-8, so each line is checked on its own bytes. */
function parseNdjsonBytes(body: Buffer, maxLines: number): IngestItem[] {
  const items: IngestItem[] = [];
  let line = 0;
  let start = 0;
  while (start <= body.length) {
    let end = body.indexOf(NL, start);
    if (end < 0) end = body.length;
    line++;
    const bytes = body.subarray(start, end);
    start = end + 1;
    if (isUtf8(bytes)) {
      const text = bytes.toString('utf8').trim();
      if (text.length === 0) continue;
      if (items.length >= maxLines) throw tooMany(maxLines);
      items.push(item(line, text));
      continue;
    }
    if (items.length >= maxLines) throw tooMany(maxLines);
    // No raw text: a bad-encoding line is never dead-lettered, and its lossy decoding is not what was sent.
    items.push({ line, rejection: BAD_UTF8 });
  }
  return items;
}

function parseJsonBody(body: Buffer | string, maxLines: number): IngestItem[] {
  let text: string;
  if (typeof body === 'string') text = body;
  else if (isUtf8(body)) text = body.toString('utf8');
  else {
    // NDJSON labelled as JSON still gets per-line results (bad lines refused, good ones kept).
    if (body.includes(NL)) return parseNdjson(body, maxLines);
    throw new AdaggError(ErrorCode.BadEncoding, 'body is not valid UTF-8');
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    // A client that labels NDJSON as JSON still gets per-line results rather than losing good lines.
    if (text.includes('\n')) return parseNdjson(text, maxLines);
    throw new AdaggError(ErrorCode.NoValidClicks, `body is not valid JSON: ${(err as Error).message}`);
  }
  const arr = Array.isArray(doc) ? doc : [doc];
  if (arr.length > maxLines) throw tooMany(maxLines);
  // Depth per element: one deeply nested click is refused as `too_deep`, the others are kept.
  return arr.map((value: unknown, i) => (nestsDeeperThan(value, MAX_JSON_DEPTH) ? { line: i + 1, rejection: TOO_DEEP } : { line: i + 1, value }));
}
