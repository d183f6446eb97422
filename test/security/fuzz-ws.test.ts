import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { filterFromRecord, intParam } from '../../src/gateway/params.ts';
import { parseClientFrame } from '../../src/gateway/ws-protocol.ts';

/**
 * Property-based fuzzing of the WebSocket message parser (ws-protocol.ts `parseClientFrame`) and
 * of the checks a subscribe frame then goes through (the REST filter and number checks): any text
 * frame gives a well-formed frame or a coded ADAGG_E_BAD_PARAM; no TypeError (defect 1's `null`),
 * and a filter is never silently dropped.
 */
const RUNS = 400;
const DIMS = ['country', 'device'];
const CUBES = ['country+device'];

const jsonish = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom(null, true, false, 0, -1, 1.5, 1e21, '', 'ping', 'subscribe', '__proto__'),
    fc.string({ maxLength: 30 }),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.oneof(fc.constantFrom('type', 'count', 'window', 'filter', '__proto__', 'constructor', 'country'), fc.string({ maxLength: 8 })), tie('value'), { maxKeys: 5 }),
  ),
})).value;

/** Frames shaped like real ones, with hostile parts. */
const frameLike = fc
  .record({
    type: fc.constantFrom('subscribe', 'ping', 'SUBSCRIBE', null, 1, undefined),
    count: fc.option(fc.oneof(fc.integer(), fc.string({ maxLength: 12 }), fc.constant(null), fc.constant([1])), { nil: undefined }),
    window: fc.option(fc.oneof(fc.integer(), fc.string({ maxLength: 12 })), { nil: undefined }),
    filter: fc.option(
      fc.oneof(
        fc.dictionary(fc.oneof(fc.constantFrom('country', 'device', '__proto__', 'constructor', 'toString'), fc.string({ maxLength: 8 })), fc.oneof(fc.string({ maxLength: 70 }), fc.integer(), fc.constant(null)), { maxKeys: 3 }),
        fc.constant(['US']),
        fc.constant('US'),
        fc.constant(null),
      ),
      { nil: undefined },
    ),
  })
  .map((f) => JSON.stringify(f));

/** The raw frame text with prototype keys spelled out (JSON.stringify cannot produce an own `__proto__`). */
const protoFrames = fc.constantFrom(
  'null',
  '[]',
  '"subscribe"',
  '{"type":"subscribe","filter":{"__proto__":"US"}}',
  '{"type":"subscribe","filter":{"__proto__":{"country":"US"}}}',
  '{"__proto__":{"type":"ping"}}',
  '{"type":"subscribe","filter":{"constructor":"x"}}',
  '{"type":"subscribe","filter":{"country":"' + 'U'.repeat(5000) + '"}}',
  '{"type":"subscribe","count":"1e3"}',
  '{"type":"subscribe","count":9007199254740993}',
  '{"type":"subscribe","filter":{"country":"\\ud800"}}',
);

function exercise(text: string): void {
  let frame;
  try {
    frame = parseClientFrame(text);
  } catch (err) {
    expect(err).toBeInstanceOf(AdaggError);
    expect((err as AdaggError).code).toBe(ErrorCode.BadParam);
    return;
  }
  expect(['subscribe', 'ping']).toContain(frame.type);
  if (frame.type !== 'subscribe') return;
  // What the feed does next: numbers as REST parameters, the filter as a REST filter.
  for (const [name, v] of [['count', frame.count], ['window', frame.window]] as const) {
    try {
      const q = Object.create(null) as Record<string, string | undefined>;
      q[name] = v === undefined ? undefined : String(v);
      const n = intParam(q, name, 10, 1, 1000);
      expect(Number.isSafeInteger(n)).toBe(true);
    } catch (err) {
      expect(err).toBeInstanceOf(AdaggError);
    }
  }
  if (frame.filter === undefined || frame.filter === null) return;
  const keys = Object.keys(frame.filter);
  try {
    const f = filterFromRecord(frame.filter, DIMS, CUBES);
    // A filter with keys is never answered as unfiltered.
    if (keys.length > 0) expect(f).toBeDefined();
  } catch (err) {
    expect(err).toBeInstanceOf(AdaggError);
    expect([ErrorCode.BadParam, ErrorCode.FilterNotPreaggregated]).toContain((err as AdaggError).code);
  }
}

describe('fuzz: the WebSocket message parser', () => {
  it('any text: a frame or a coded ADAGG_E_BAD_PARAM', () => {
    fc.assert(fc.property(fc.string({ maxLength: 200, unit: 'binary' }), exercise), { numRuns: RUNS });
  });
  it('any JSON value as a frame', () => {
    fc.assert(fc.property(jsonish, (v) => exercise(JSON.stringify(v) ?? 'null')), { numRuns: RUNS });
  });
  it('frame-shaped hostile frames, prototype keys and the reported cases', () => {
    fc.assert(fc.property(fc.oneof(frameLike, protoFrames), exercise), { numRuns: RUNS });
  });
});
