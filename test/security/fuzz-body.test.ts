import { isUtf8 } from 'node:buffer';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AdaggError, ErrorCode } from '../../src/errors.ts';
import { parseBody } from '../../src/ingest/body.ts';
import { ClickIngest } from '../../src/ingest/click-ingest.ts';
import type { Click } from '../../src/model/click.ts';
import { REJECT_CODES } from '../../src/model/validate.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { hostileLine, joinLines, mixedLines, validClick, validLine, type FuzzLine } from './fuzz-arbitraries.ts';
import { NOW } from './input-gateway.ts';

/**
 * Property-based fuzzing of the ingest body parser and the ingest path (body.ts, validate.ts,
 * click-ingest.ts): for any mix of valid clicks and hostile lines, nothing throws but a coded
 * AdaggError, every refused line gets a per-line code, and exactly the valid lines are accepted.
 */
const RUNS = 150;

function recordingIngest(): { ingest: ClickIngest; published: Click[] } {
  const published: Click[] = [];
  const producer = { publish: async (c: readonly Click[]) => (published.push(...c), { messages: 1, duplicates: 0 }) };
  const deadLetters = {
    // Records must always be serialisable (the nested-field stack overflow of defect 7).
    publishEach: async (ls: ReadonlyArray<{ id: string; letter: unknown }>) => ls.map((l) => (JSON.stringify(l.letter), undefined)),
  };
  return { ingest: new ClickIngest(producer as never, deadLetters, { correctionHorizonMs: 3600_000, maxFutureMs: 300_000 }, new ManualClock(NOW)), published };
}

async function check(lines: FuzzLine[], body: Buffer, contentType: string): Promise<void> {
  const { ingest, published } = recordingIngest();
  const items = parseBody(body, contentType, 10_000);
  const res = await ingest.ingest(items, 'fuzz');
  const valid = lines.filter((l) => l.valid);
  expect(res.accepted).toBe(valid.length);
  expect(published.map((c) => c.click_id)).toEqual(valid.map((l) => l.id));
  // Every hostile line is refused at its own line number, with a known code.
  const hostileAt = lines.flatMap((l, i) => (l.valid ? [] : [i + 1]));
  expect(res.rejected.map((r) => r.line)).toEqual(hostileAt);
  for (const r of res.rejected) expect(REJECT_CODES).toContain(r.code);
}

describe('fuzz: the body parser and ingest path', () => {
  it('NDJSON: exactly the valid lines are accepted; every hostile line is refused on its own line with a code', async () => {
    await fc.assert(
      fc.asyncProperty(mixedLines, async (lines) => {
        await check(lines, joinLines(lines), 'application/x-ndjson');
      }),
      { numRuns: RUNS },
    );
  });

  it('NDJSON with CRLF line ends and blank lines between: line numbers still count every line', async () => {
    await fc.assert(
      fc.asyncProperty(mixedLines, async (lines) => {
        const withBlanks = lines.flatMap((l) => [l, { bytes: Buffer.alloc(0), valid: false, blank: true }]);
        const { ingest, published } = recordingIngest();
        const res = await ingest.ingest(parseBody(joinLines(withBlanks, '\r\n'), undefined, 10_000), 'fuzz');
        expect(res.accepted).toBe(lines.filter((l) => l.valid).length);
        expect(published.map((c) => c.click_id)).toEqual(lines.filter((l) => l.valid).map((l) => l.id));
        expect(res.rejected.map((r) => r.line)).toEqual(lines.flatMap((l, i) => (l.valid ? [] : [2 * i + 1])));
      }),
      { numRuns: RUNS },
    );
  });

  it('JSON arrays: every element is judged on its own (hostile elements refused, valid ones kept)', async () => {
    const jsonable = (l: FuzzLine): boolean => {
      if (!isUtf8(l.bytes)) return false;
      try {
        JSON.parse(l.bytes.toString('utf8'));
        return true;
      } catch {
        return false;
      }
    };
    await fc.assert(
      fc.asyncProperty(mixedLines, async (all) => {
        const lines = all.filter(jsonable);
        fc.pre(lines.length > 0);
        const body = Buffer.concat([Buffer.from('['), joinLines(lines, ','), Buffer.from(']')]);
        await check(lines, body, 'application/json');
      }),
      { numRuns: RUNS },
    );
  });

  it('arbitrary bytes and content types: the parser returns items or throws a coded AdaggError, never anything else', async () => {
    const codes = new Set<string>([ErrorCode.NoValidClicks, ErrorCode.TooManyLines, ErrorCode.UnsupportedMediaType, ErrorCode.BadEncoding]);
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(fc.uint8Array({ maxLength: 400 }).map((a) => Buffer.from(a)), fc.string({ maxLength: 400, unit: 'binary' }).map((s) => Buffer.from(s))),
        fc.constantFrom(undefined, 'application/json', 'application/x-ndjson', 'text/plain; charset=latin1', 'text/csv', 'APPLICATION/JSON', ';;', 'application/json-seq'),
        async (body, ct) => {
          let items;
          try {
            items = parseBody(body, ct, 5);
          } catch (err) {
            expect(err).toBeInstanceOf(AdaggError);
            expect(codes).toContain((err as AdaggError).code);
            return;
          }
          const res = await recordingIngest().ingest.ingest(items, 'fuzz');
          expect(res.accepted + res.rejected.length).toBe(items.length);
          for (const r of res.rejected) expect(REJECT_CODES).toContain(r.code);
        },
      ),
      { numRuns: RUNS * 2 },
    );
  });

  it('a single hostile line beside one valid click never costs the valid click', async () => {
    await fc.assert(
      fc.asyncProperty(validClick, hostileLine, fc.boolean(), async (c, h, first) => {
        const v = validLine(c, 0);
        const lines = first ? [h, v] : [v, h];
        await check(lines, joinLines(lines), 'application/x-ndjson');
      }),
      { numRuns: RUNS * 2 },
    );
  });
});
