import { gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.ts';
import { REJECT_CODES } from '../../src/model/validate.ts';
import { joinLines, mixedLines } from './fuzz-arbitraries.ts';
import { NOW, recordingGateway, type RecordingGateway } from './input-gateway.ts';

/**
 * Fuzzing over the real HTTP gateway (fastify inject: routes, body parser, content encodings,
 * ingest path, parameter parsing, error handler): never a 500, every error `{code, error}` with a
 * known code, and the accepted count equals the number of valid lines, which are exactly the
 * clicks handed to the producer.
 */
const RUNS = 100;

describe('fuzz: the HTTP gateway', () => {
  let g: RecordingGateway;
  beforeAll(async () => {
    g = recordingGateway({ maxBodyBytes: 4 << 20, maxLines: 1000 });
    await g.app.ready();
  });
  afterAll(async () => {
    await g?.app.close();
  });

  it('POST /v1/clicks: status 200 with accepted = valid lines (400 ADAGG_E_NO_VALID_CLICKS when none), plain or gzip', async () => {
    await fc.assert(
      fc.asyncProperty(mixedLines, fc.constantFrom('application/x-ndjson', 'text/plain', undefined), fc.boolean(), async (lines, ct, gzip) => {
        const before = g.published.length;
        const raw = joinLines(lines);
        const headers: Record<string, string> = {};
        if (ct !== undefined) headers['content-type'] = ct;
        if (gzip) headers['content-encoding'] = 'gzip';
        const res = await g.app.inject({ method: 'POST', url: '/v1/clicks', headers, payload: gzip ? gzipSync(raw) : raw });
        const body = res.json<any>();
        const valid = lines.filter((l) => l.valid);
        if (valid.length === 0) {
          expect([res.statusCode, body.code]).toEqual([400, ErrorCode.NoValidClicks]);
        } else {
          expect(res.statusCode, JSON.stringify(body).slice(0, 300)).toBe(200);
        }
        expect(body.accepted).toBe(valid.length);
        expect(body.rejected).toHaveLength(lines.length - valid.length);
        for (const r of body.rejected) expect(REJECT_CODES).toContain(r.code);
        expect(g.published.slice(before).map((c) => c.click_id)).toEqual(valid.map((l) => l.id));
      }),
      { numRuns: RUNS },
    );
  });

  it('GET routes with hostile query strings: never 5xx; every error is {code, error} with a known 4xx code', async () => {
    const part = fc.oneof(
      fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'country', 'device', 'from', 'to', 'at', 'count', 'window', 'user_id', '%ff', '%', '%E0%A4%A', 'a[b]', 'a.b'),
      fc.string({ maxLength: 12 }).map(encodeURIComponent),
    );
    const val = fc.oneof(
      fc.constantFrom('9000000000000000', '2024-02-30T00:00:00Z', 'Sun%20Nov%2022%202026%2004%3A00%3A00%20GMT%2B0100', String(NOW), new Date(NOW).toISOString(), '-1', '1e3', '%ff', ''),
      fc.string({ maxLength: 80 }).map(encodeURIComponent),
    );
    const qs = fc.array(fc.tuple(part, val), { maxLength: 5 }).map((ps) => ps.map(([k, v]) => `${k}=${v}`).join('&'));
    const ad = fc.oneof(fc.constantFrom('ad-1', 'a'.repeat(128), 'a'.repeat(129), '%ff', '..', '__proto__'), fc.string({ minLength: 1, maxLength: 20 }).map(encodeURIComponent));
    const known = new Set<string>(Object.values(ErrorCode));
    await fc.assert(
      fc.asyncProperty(ad, qs, fc.boolean(), async (adId, q, popular) => {
        const url = popular ? `/v1/ads/popular_ads?${q}` : `/v1/ads/${adId}/aggregated_count?from=${NOW - 600_000}&to=${NOW}&${q}`;
        const res = await g.app.inject({ method: 'GET', url });
        expect(res.statusCode, url).toBeLessThan(500);
        if (res.statusCode >= 400) {
          const body = res.json<Record<string, unknown>>();
          expect(Object.keys(body).sort(), url).toEqual(['code', 'error']);
          expect(known, url).toContain(body.code as string);
        }
      }),
      { numRuns: RUNS * 3 },
    );
  });
});
