import { AdaggError, ErrorCode } from '../errors.ts';
import { parseJsonLine } from '../model/validate.ts';
import type { IngestItem } from './click-ingest.ts';

const NDJSON_TYPES = new Set(['application/x-ndjson', 'application/ndjson', 'application/jsonl', 'application/json-seq', 'text/plain', '']);

/**
 * Splits a POST body into records. NDJSON: one click per line (blank lines skipped, numbering
 * keeps counting them so `line` matches the client's file). JSON: an array of clicks (line =
 * 1-based index) or one click object. Throws ADAGG_E_TOO_MANY_LINES past `maxLines`.
 */
export function parseBody(body: string, contentType: string | undefined, maxLines: number): IngestItem[] {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (type === 'application/json') return parseJsonBody(body, maxLines);
  if (!NDJSON_TYPES.has(type)) {
    throw new AdaggError(ErrorCode.UnsupportedMediaType, `content-type ${type} is not supported; use application/x-ndjson or application/json`);
  }
  return parseNdjson(body, maxLines);
}

export function parseNdjson(body: string, maxLines: number): IngestItem[] {
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
    if (items.length >= maxLines) {
      throw new AdaggError(ErrorCode.TooManyLines, `body has more than ${maxLines} clicks (ADAGG_MAX_LINES)`);
    }
    const p = parseJsonLine(text);
    items.push(p.ok ? { line, value: p.value, raw: text } : { line, rejection: p.rejection, raw: text });
  }
  return items;
}

function parseJsonBody(body: string, maxLines: number): IngestItem[] {
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch (err) {
    // A client that labels NDJSON as JSON still gets per-line results rather than losing good lines.
    if (body.includes('\n')) return parseNdjson(body, maxLines);
    throw new AdaggError(ErrorCode.NoValidClicks, `body is not valid JSON: ${(err as Error).message}`);
  }
  const arr = Array.isArray(doc) ? doc : [doc];
  if (arr.length > maxLines) throw new AdaggError(ErrorCode.TooManyLines, `body has more than ${maxLines} clicks (ADAGG_MAX_LINES)`);
  return arr.map((value, i) => ({ line: i + 1, value }));
}
