import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { checkRange, filterParam, intParam, minuteParam, type Query } from '../../src/gateway/params.ts';
import { MAX_TIME_MS, parseIsoTime, parseStrictTime } from '../../src/model/iso-time.ts';

/**
 * Property-based fuzzing of the query-string parsers (params.ts) and strict time parsing: any
 * query either parses to a sound value or fails with a coded AdaggError; a filter parameter is
 * never dropped (no silently unfiltered answer, defect 8); dates are strict ISO-8601 (defect 10).
 */
const RUNS = 300;
const DIMS = ['country', 'device'];
const CUBES = ['country+device'];
const CODES = new Set<string>([ErrorCode.BadParam, ErrorCode.FilterNotPreaggregated, ErrorCode.RangeTooLarge]);

/** Calls `f`; a throw must be a coded AdaggError with a known code. */
function coded<T>(f: () => T): T | AdaggError {
  try {
    return f();
  } catch (err) {
    expect(err).toBeInstanceOf(AdaggError);
    expect(CODES).toContain((err as AdaggError).code);
    return err as AdaggError;
  }
}

const PROTO_KEYS = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf', 'prototype', '__defineGetter__'];
const key = fc.oneof(fc.constantFrom(...PROTO_KEYS, ...DIMS, 'from', 'to', 'at', 'count', 'window', 'user_id', ''), fc.string({ maxLength: 20 }));
const value = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.array(fc.string({ maxLength: 5 }), { minLength: 2, maxLength: 3 }),
  fc.constantFrom('9000000000000000', '2024-02-30T00:00:00Z', '2024-07-09T00:00:00 GMT+0100', '-1', '1e3', '０１２', '1763780400000', '2026-11-22T03:00:00Z'),
);
/** A query object as fastify's parser builds it: null prototype, any keys. */
const query = fc.array(fc.tuple(key, value), { maxLength: 6 }).map((pairs) => {
  const q = Object.create(null) as Query;
  for (const [k, v] of pairs) q[k] = v;
  return q;
});

describe('fuzz: query-string parsers', () => {
  it('minuteParam, intParam and checkRange: a sound value or a coded error', () => {
    fc.assert(
      fc.property(query, (q) => {
        for (const name of ['from', 'to', 'at']) {
          const m = coded(() => minuteParam(q, name, false));
          if (typeof m === 'number') {
            expect(Number.isSafeInteger(m)).toBe(true);
            expect(m * 60_000).toBeLessThanOrEqual(MAX_TIME_MS);
            expect(m).toBeGreaterThanOrEqual(0);
          }
        }
        const n = coded(() => intParam(q, 'count', 10, 1, 1000));
        if (typeof n === 'number') expect(Number.isSafeInteger(n) && n >= 1 && n <= 1000).toBe(true);
        coded(() => checkRange(Number(q.from ?? 0), Number(q.to ?? 1), 10_080));
      }),
      { numRuns: RUNS },
    );
  });

  it('filterParam never drops a filter: with any non-reserved parameter it returns a filter or refuses (defect 8)', () => {
    fc.assert(
      fc.property(query, (q) => {
        const reserved = ['from', 'to'];
        const keys = Object.keys(q).filter((k) => !reserved.includes(k));
        const f = coded(() => filterParam(q, reserved, DIMS, CUBES));
        if (keys.length === 0) expect(f).toBeUndefined();
        else expect(f).not.toBeUndefined();
        if (f !== undefined && !(f instanceof AdaggError)) {
          // Only configured dimensions and cubes are ever answered.
          expect([...DIMS, ...CUBES]).toContain(f.dim);
          expect(f.dim.split('+').sort()).toEqual([...keys].sort());
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('parseStrictTime agrees with the calendar: valid date-times round-trip, impossible days are refused', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date(0), max: new Date(MAX_TIME_MS), noInvalidDate: true }), (d) => {
        const iso = d.toISOString();
        expect(parseStrictTime(iso)).toBe(d.getTime());
        expect(parseStrictTime(String(d.getTime()))).toBe(d.getTime());
        expect(parseStrictTime(iso.replace('T', ' ').replace('Z', ''))).toBe(d.getTime());
        // Shift into another zone and back.
        const plus2 = new Date(d.getTime() + 2 * 3600_000).toISOString().replace('Z', '+02:00');
        if (d.getTime() + 2 * 3600_000 <= MAX_TIME_MS && plus2.length === iso.length + 5) expect(parseStrictTime(plus2)).toBe(d.getTime());
      }),
      { numRuns: RUNS },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1970, max: 9999 }), fc.integer({ min: 1, max: 12 }), fc.integer({ min: 29, max: 40 }), (y, m, day) => {
        const s = `${String(y).padStart(4, '0')}-${String(m).padStart(2, '0')}-${String(day).padStart(2, '0')}T00:00:00Z`;
        const real = new Date(Date.UTC(y, m, 0)).getUTCDate();
        if (day > real) expect(parseIsoTime(s), s).toBeUndefined();
        else expect(parseIsoTime(s), s).toBe(Date.UTC(y, m - 1, day));
      }),
      { numRuns: RUNS },
    );
  });

  it('parseStrictTime on arbitrary strings: undefined or a time Date can print (never a RangeError later)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 40 }), fc.stringMatching(/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?([zZ]|[+-]\d{2}(:?\d{2})?)?)?$/)), (s) => {
        const t = parseStrictTime(s);
        if (t !== undefined) {
          expect(Number.isFinite(t)).toBe(true);
          expect(() => new Date(t).toISOString()).not.toThrow();
          // Whatever parsed is what Date.parse reads from the same (zoned) ISO text, when Date reads it at all.
          const zoned = /[zZ]|[+-]\d{2}(:?\d{2})?$/.test(s.slice(10)) ? s : null;
          if (zoned && /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?(Z|[+-]\d{2}:\d{2})$/.test(zoned)) expect(t).toBe(Date.parse(zoned));
        }
      }),
      { numRuns: RUNS * 3 },
    );
  });
});
