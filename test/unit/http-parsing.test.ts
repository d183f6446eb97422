import { describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { checkRange, filterParam, intParam, minuteParam, type Query } from '../../src/gateway/params.ts';
import { parseBody } from '../../src/ingest/body.ts';
import type { IngestItem } from '../../src/ingest/click-ingest.ts';

function errorOf(fn: () => unknown): { code: string; message: string; details?: Record<string, unknown> | undefined } {
  try {
    fn();
  } catch (e) {
    if (e instanceof AdaggError) return { code: e.code, message: e.message, details: e.details };
    return { code: `not an AdaggError: ${String(e)}`, message: '' };
  }
  return { code: 'no error', message: '' };
}

/** `[line, value]` for parsed items, `[line, rejection code]` for rejected ones. */
function summary(items: readonly IngestItem[]): Array<[number, unknown]> {
  return items.map((it) => ('rejection' in it ? [it.line, `rejected:${it.rejection.code}`] : [it.line, it.value]));
}

const MINUTE = 60_000;
const T = Date.UTC(2024, 6, 9, 0, 0, 0);
const M = T / MINUTE;

describe('parseBody: NDJSON', () => {
  it('one click per line; blank lines are skipped but still counted in line numbers', () => {
    const body = '{"click_id":"c1"}\n\n  \n{"click_id":"c2"}\r\n{"click_id":"c3"}\n';
    const items = parseBody(body, 'application/x-ndjson', 100);
    expect(summary(items)).toEqual([
      [1, { click_id: 'c1' }],
      [4, { click_id: 'c2' }],
      [5, { click_id: 'c3' }],
    ]);
    expect(items[1]).toMatchObject({ raw: '{"click_id":"c2"}' });
  });

  it('an invalid JSON line is an invalid_json rejection at its line; the other lines still parse', () => {
    const body = '{"click_id":"c1"}\n\n{"click_id": c2}\n{"click_id":"c3"}';
    const items = parseBody(body, 'application/x-ndjson', 100);
    expect(summary(items)).toEqual([
      [1, { click_id: 'c1' }],
      [3, 'rejected:invalid_json'],
      [4, { click_id: 'c3' }],
    ]);
    const bad = items[1]!;
    expect('rejection' in bad && bad.rejection.error).toMatch(/^invalid JSON/);
    expect(bad.raw).toBe('{"click_id": c2}');
  });

  it('accepts the NDJSON media types, parameters and a missing content type', () => {
    const body = '{"a":1}\n{"a":2}';
    const expected = [
      [1, { a: 1 }],
      [2, { a: 2 }],
    ];
    for (const ct of [
      undefined,
      '',
      'application/x-ndjson',
      'application/x-ndjson; charset=utf-8',
      'Application/NDJSON',
      'application/jsonl',
      'text/plain',
    ]) {
      expect(summary(parseBody(body, ct, 10)), String(ct)).toEqual(expected);
    }
  });

  it('an empty body gives no items', () => {
    expect(parseBody('', 'application/x-ndjson', 10)).toEqual([]);
    expect(parseBody('\n\n', undefined, 10)).toEqual([]);
  });

  it('more than maxLines non-blank lines fails with ADAGG_E_TOO_MANY_LINES; exactly maxLines is fine', () => {
    const three = '{"a":1}\n\n{"a":2}\n{"a":3}\n';
    expect(parseBody(three, 'application/x-ndjson', 3)).toHaveLength(3);
    expect(errorOf(() => parseBody(three, 'application/x-ndjson', 2)).code).toBe(ErrorCode.TooManyLines);
    // Invalid lines count too: they are reported, so they are work.
    expect(errorOf(() => parseBody('x\ny\nz', 'application/x-ndjson', 2)).code).toBe(ErrorCode.TooManyLines);
  });
});

describe('parseBody: application/json', () => {
  it('an array: one item per element, line = 1-based index', () => {
    const items = parseBody('[{"click_id":"c1"},{"click_id":"c2"},3]', 'application/json', 10);
    expect(summary(items)).toEqual([
      [1, { click_id: 'c1' }],
      [2, { click_id: 'c2' }],
      [3, 3],
    ]);
  });

  it('a single object is one item at line 1', () => {
    expect(summary(parseBody('{"click_id":"c1","ad_id":"a"}', 'application/json; charset=utf-8', 10))).toEqual([
      [1, { click_id: 'c1', ad_id: 'a' }],
    ]);
  });

  it('a pretty-printed array is still one document', () => {
    const body = JSON.stringify([{ click_id: 'c1' }, { click_id: 'c2' }], null, 2);
    expect(summary(parseBody(body, 'application/json', 10))).toEqual([
      [1, { click_id: 'c1' }],
      [2, { click_id: 'c2' }],
    ]);
  });

  it('too many elements fail with ADAGG_E_TOO_MANY_LINES', () => {
    expect(parseBody('[1,2,3]', 'application/json', 3)).toHaveLength(3);
    expect(errorOf(() => parseBody('[1,2,3]', 'application/json', 2)).code).toBe(ErrorCode.TooManyLines);
  });

  it('invalid JSON on one line fails with ADAGG_E_NO_VALID_CLICKS; NDJSON labelled as JSON is parsed per line', () => {
    expect(errorOf(() => parseBody('{"click_id":', 'application/json', 10)).code).toBe(ErrorCode.NoValidClicks);
    expect(summary(parseBody('{"a":1}\n{"a":2}\nnope', 'application/json', 10))).toEqual([
      [1, { a: 1 }],
      [2, { a: 2 }],
      [3, 'rejected:invalid_json'],
    ]);
  });
});

describe('parseBody: media types', () => {
  it('an unsupported content type fails with ADAGG_E_UNSUPPORTED_MEDIA_TYPE', () => {
    for (const ct of ['text/csv', 'application/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded']) {
      const e = errorOf(() => parseBody('{"a":1}', ct, 10));
      expect(e.code, ct).toBe(ErrorCode.UnsupportedMediaType);
      expect(e.message).toContain(ct.split(';')[0]!);
    }
  });
});

describe('query parameters', () => {
  it('minuteParam floors ISO-8601 and epoch-ms times to the UTC minute index', () => {
    expect(minuteParam({ from: '2024-07-09T00:00:59.999Z' }, 'from', true)).toBe(M);
    expect(minuteParam({ from: '2024-07-09T00:01:00Z' }, 'from', true)).toBe(M + 1);
    expect(minuteParam({ from: '2024-07-09 00:02:30' }, 'from', true)).toBe(M + 2); // no zone = UTC
    expect(minuteParam({ from: '2024-07-09T02:03:00+02:00' }, 'from', true)).toBe(M + 3);
    expect(minuteParam({ from: String(T + 4 * MINUTE + 1) }, 'from', true)).toBe(M + 4);
    expect(minuteParam({}, 'from', false)).toBeUndefined();
    expect(minuteParam({ from: '' }, 'from', false)).toBeUndefined();
  });

  it('minuteParam errors are ADAGG_E_BAD_PARAM naming the parameter', () => {
    for (const q of [{}, { to: '' }, { to: 'tomorrow' }, { to: '-60000' }, { to: ['1', '2'] }, { to: '2024-99-99T00:00:00Z' }] as Query[]) {
      const e = errorOf(() => minuteParam(q, 'to', true));
      expect(e.code, JSON.stringify(q)).toBe(ErrorCode.BadParam);
      expect(e.details).toEqual({ param: 'to' });
      expect(e.message).toContain('to');
    }
  });

  it('intParam: default when absent, bounds inclusive, whole numbers only', () => {
    expect(intParam({}, 'count', 10, 1, 1000)).toBe(10);
    expect(intParam({ count: '' }, 'count', 10, 1, 1000)).toBe(10);
    expect(intParam({ count: '1' }, 'count', 10, 1, 1000)).toBe(1);
    expect(intParam({ count: '1000' }, 'count', 10, 1, 1000)).toBe(1000);
    expect(intParam({ count: '007' }, 'count', 10, 1, 1000)).toBe(7);
    for (const v of ['0', '1001', '-1', '1.5', 'ten', ' 5', '1e2', '99999999999999999999']) {
      const e = errorOf(() => intParam({ count: v }, 'count', 10, 1, 1000));
      expect(e.code, v).toBe(ErrorCode.BadParam);
      expect(e.details).toEqual({ param: 'count' });
    }
    expect(errorOf(() => intParam({ count: ['1', '2'] }, 'count', 10, 1, 1000)).code).toBe(ErrorCode.BadParam);
  });

  const RESERVED = ['from', 'to', 'count', 'window'];

  it('filterParam: no filter, or one configured dimension (country upper-cased)', () => {
    expect(filterParam({ from: 'x', to: 'y' }, RESERVED, ['country'])).toBeUndefined();
    expect(filterParam({ from: 'x', country: 'us' }, RESERVED, ['country'])).toEqual({ dim: 'country', value: 'US' });
    expect(filterParam({ device: 'iOS' }, RESERVED, ['country', 'device'])).toEqual({ dim: 'device', value: 'iOS' });
  });

  it('filterParam: a dimension that is not pre-aggregated (user_id) fails with ADAGG_E_FILTER_NOT_PREAGGREGATED', () => {
    const e = errorOf(() => filterParam({ from: 'x', user_id: 'u-1' }, RESERVED, ['country']));
    expect(e.code).toBe(ErrorCode.FilterNotPreaggregated);
    expect(e.message).toContain('user_id');
  });

  it('filterParam: two filters fail with ADAGG_E_FILTER_NOT_PREAGGREGATED unless a cube covers them', () => {
    const e = errorOf(() => filterParam({ country: 'US', device: 'ios' }, RESERVED, ['country', 'device']));
    expect(e.code).toBe(ErrorCode.FilterNotPreaggregated);
    expect(e.message).toContain('country+device');
    const cube = filterParam({ device: 'ios', country: 'us' }, RESERVED, ['country', 'device'], ['country+device']);
    expect(cube).toEqual({ dim: 'country+device', value: 'US\u001fios' });
  });

  it('filterParam: an empty, repeated or over-long value is ADAGG_E_BAD_PARAM', () => {
    for (const q of [{ country: '' }, { country: ['US', 'DE'] }, { country: 'x'.repeat(65) }] as Query[]) {
      const e = errorOf(() => filterParam(q, RESERVED, ['country']));
      expect(e.code, JSON.stringify(q)).toBe(ErrorCode.BadParam);
      expect(e.details).toEqual({ param: 'country' });
    }
  });

  it('checkRange: at least one minute, at most maxMinutes', () => {
    expect(errorOf(() => checkRange(M, M + 1, 10)).code).toBe('no error');
    expect(errorOf(() => checkRange(M, M + 10, 10)).code).toBe('no error');
    const empty = errorOf(() => checkRange(M, M, 10));
    expect(empty.code).toBe(ErrorCode.BadParam);
    expect(empty.details).toEqual({ param: 'to' });
    expect(errorOf(() => checkRange(M + 5, M, 10)).code).toBe(ErrorCode.BadParam);
    const big = errorOf(() => checkRange(M, M + 11, 10));
    expect(big.code).toBe(ErrorCode.RangeTooLarge);
    expect(big.message).toContain('11');
  });
});
