/**
 * fast-check generators for the fuzz tests: valid clicks, and hostile NDJSON lines of every kind
 * the issue names (invalid JSON, deep nesting, huge strings, wrong types, prototype keys, invalid
 * UTF-8, lone surrogates, odd dates). Every hostile line is invalid by construction, so a fuzz
 * property can say exactly which lines must be accepted.
 */
import fc from 'fast-check';
import { NOW } from './input-gateway.ts';

/** A line to put in a body: bytes (may be invalid UTF-8, never a newline) and whether it is a valid click. */
export interface FuzzLine {
  bytes: Buffer;
  valid: boolean;
  /** The click id a valid line carries. */
  id?: string;
}

const text = (s: string): Buffer => Buffer.from(s, 'utf8');
const noNewline = (b: Buffer): Buffer => Buffer.from(b.filter((x) => x !== 0x0a));

/** A valid click; its id is made unique by the caller's index. */
export const validClick = fc.record({
  ad: fc.stringMatching(/^[A-Za-z0-9_.:-]{1,128}$/),
  ageMs: fc.integer({ min: 0, max: 3_500_000 }),
  tsForm: fc.constantFrom('number', 'digits', 'iso', 'offset'),
  country: fc.option(fc.constantFrom('US', 'de', 'FRA'), { nil: undefined }),
  device: fc.option(fc.string({ minLength: 1, maxLength: 64 }).filter((s) => !/[\ud800-\udfff]/u.test(s)), { nil: undefined }),
  idTail: fc.string({ maxLength: 40 }).map((s) => s.replace(/[\ud800-\udfff]/gu, '')),
});

export function validLine(c: typeof validClick extends fc.Arbitrary<infer T> ? T : never, index: number): FuzzLine {
  const ms = NOW - c.ageMs;
  const ts = c.tsForm === 'number' ? ms : c.tsForm === 'digits' ? String(ms) : c.tsForm === 'iso' ? new Date(ms).toISOString() : new Date(ms + 3_600_000).toISOString().replace('Z', '+01:00');
  const id = `v${index}-${c.idTail}`;
  const o: Record<string, unknown> = { click_id: id.slice(0, 128), ad_id: c.ad, ts };
  if (c.country !== undefined) o.country = c.country;
  if (c.device !== undefined) o.device = c.device;
  return { bytes: text(JSON.stringify(o)), valid: true, id: id.slice(0, 128) };
}

const base = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({ click_id: 'h', ad_id: 'ad-1', ts: NOW, ...extra });
const withRaw = (prefix: string, raw: string, suffix = '}'): string => `${prefix}${raw}${suffix}`;

/** Hostile lines, each invalid for a known reason. */
export const hostileLine: fc.Arbitrary<FuzzLine> = fc
  .oneof(
    // Not JSON at all, or cut short.
    fc.string({ maxLength: 200 }).filter((s) => {
      try {
        JSON.parse(s);
        return false;
      } catch {
        return s.trim() !== '';
      }
    }).map((s) => text(s.replace(/\n/g, ' '))),
    fc.constantFrom('{', '[', '{"click_id":', 'null', '[]', '"str"', '42', 'true', '{}', '{"__proto__":{"click_id":"x"}}').map(text),
    // Deep nesting, as a field and as the whole line.
    fc.integer({ min: 33, max: 20_000 }).map((d) => text(withRaw(`{"click_id":"deep","ad_id":"a","ts":${NOW},"x":`, '['.repeat(d) + ']'.repeat(d)))),
    fc.integer({ min: 33, max: 5_000 }).map((d) => text('{"a":'.repeat(d) + '1' + '}'.repeat(d))),
    // Huge strings where a short one is required.
    fc.integer({ min: 129, max: 200_000 }).map((n) => text(JSON.stringify(base({ click_id: 'x'.repeat(n) })))),
    fc.integer({ min: 257, max: 100_000 }).map((n) => text(JSON.stringify(base({ user_id: 'u'.repeat(n) })))),
    // Wrong types.
    fc.constantFrom<unknown>(1, true, null, [], {}, ['a'], 1.5, -1).chain((v) =>
      fc.constantFrom('click_id', 'ad_id', 'ts').map((k) => text(JSON.stringify(base({ [k]: v })))),
    ),
    // Prototype keys instead of the real fields.
    fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf').map((k) => text(`{"${k}":{"click_id":"p","ad_id":"a","ts":${NOW}},"ad_id":"ad-1","ts":${NOW}}`)),
    // Invalid UTF-8 inside a string (an otherwise valid click).
    fc.constantFrom([0xff], [0xfe], [0xc3, 0x28], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80]).map((bad) =>
      Buffer.concat([text('{"click_id":"bad-'), Buffer.from(bad), text(`","ad_id":"ad-1","ts":${NOW}}`)]),
    ),
    // Lone surrogates through JSON escapes.
    fc.constantFrom('\\ud800', '\\udfff', 'a\\ud83d', '\\ude00b').chain((esc) =>
      fc.constantFrom('click_id', 'user_id', 'device').map((k) => text(`{"click_id":"ls","ad_id":"ad-1","ts":${NOW},"${k}":"${esc}"}`)),
    ),
    // Odd dates.
    fc
      .constantFrom<unknown>(
        '2026-02-30T00:00:00Z',
        '2026-11-22T24:00:00Z',
        '2026-11-22T03:00:60Z',
        'Sun Nov 22 2026 04:00:00 GMT+0100',
        'Sun, 22 Nov 2026 03:00:00 GMT',
        '22/11/2026',
        '2026-11-22T03:00:00+25:00',
        '',
        '-1',
        -1,
        1.5,
        9_000_000_000_000_000,
        '9000000000000000',
        1e300,
        '1e12',
        ' 1763780400000',
        NOW - 2 * 3_600_000,
        NOW + 3_600_000,
      )
      .map((ts) => text(JSON.stringify(base({ ts })))),
    // Random bytes (no newline) that are not valid UTF-8.
    fc.uint8Array({ minLength: 1, maxLength: 64 }).map((a) => Buffer.concat([Buffer.from([0xff]), noNewline(Buffer.from(a))])),
  )
  .map((bytes) => ({ bytes, valid: false }));

/** A body of valid and hostile lines mixed, with blank lines sometimes between them. */
export const mixedLines = fc.array(fc.oneof({ arbitrary: validClick.map((c) => ({ c })), weight: 2 }, { arbitrary: hostileLine.map((h) => ({ h })), weight: 2 }), { minLength: 1, maxLength: 30 }).map((parts) =>
  parts.map((p, i) => ('c' in p ? validLine(p.c, i) : p.h)),
);

export function joinLines(lines: readonly FuzzLine[], sep = '\n'): Buffer {
  const out: Buffer[] = [];
  lines.forEach((l, i) => {
    if (i > 0) out.push(text(sep));
    out.push(l.bytes);
  });
  return Buffer.concat(out);
}
