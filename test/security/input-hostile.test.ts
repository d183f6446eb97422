import { connect as netConnect } from 'node:net';
import { deflateSync, gzipSync } from 'node:zlib';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.ts';
import { clickLine, NOW, recordingGateway, type RecordingGateway } from './input-gateway.ts';

/**
 * Hostile input on the ingest body and the query strings, answered by the real gateway (routes,
 * body parser, ingest path, parameter parsing): issue 11 defects 7 (nesting), 8 (REST), 9 and 10.
 * Every refusal is coded, good lines beside bad ones are kept, nothing answers 500.
 */

const MIN = 60_000;
const F = NOW - 5 * MIN;
const T = NOW + MIN;
const NDJSON = { 'content-type': 'application/x-ndjson' };

describe('hostile input on POST /v1/clicks and the query strings', () => {
  let g: RecordingGateway;
  beforeAll(async () => {
    g = recordingGateway({ maxBodyBytes: 1 << 20 });
    await g.app.ready();
  });
  afterAll(async () => {
    await g?.app.close();
  });

  const post = async (payload: string | Buffer, headers: Record<string, string> = NDJSON) => {
    const res = await g.app.inject({ method: 'POST', url: '/v1/clicks', headers, payload });
    return { status: res.statusCode, body: res.json<any>() };
  };
  async function errorOf(req: InjectOptions): Promise<{ status: number; code: string }> {
    const res = await g.app.inject(req);
    const body = res.json<Record<string, unknown>>();
    expect(Object.keys(body).sort(), JSON.stringify(body)).toEqual(['code', 'error']);
    return { status: res.statusCode, code: body.code as string };
  }
  const published = (prefix: string) => g.published.filter((c) => c.click_id.startsWith(prefix)).map((c) => c.click_id);

  it('defect 9: two ids differing only in invalid UTF-8 bytes are both refused (bad_encoding), never counted as one; the good line beside them is kept', async () => {
    const a = Buffer.concat([Buffer.from('{"click_id":"u9-\xff'.replace('\xff', '')), Buffer.from([0xff]), Buffer.from(`","ad_id":"ad-1","ts":${NOW}}`)]);
    const b = Buffer.concat([Buffer.from('{"click_id":"u9-'), Buffer.from([0xfe]), Buffer.from(`","ad_id":"ad-1","ts":${NOW}}`)]);
    const body = Buffer.concat([a, Buffer.from('\n'), b, Buffer.from('\n' + clickLine('u9-good') + '\n')]);
    const res = await post(body);
    expect(res.status).toBe(200);
    expect(res.body.accepted).toBe(1);
    expect(res.body.rejected).toEqual([
      { line: 1, code: 'bad_encoding', error: expect.any(String) },
      { line: 2, code: 'bad_encoding', error: expect.any(String) },
    ]);
    expect(published('u9-')).toEqual(['u9-good']);
  });

  it('defect 9: lone surrogates from JSON escapes are refused per line (bad_encoding), a valid pair is kept', async () => {
    const lines = [
      `{"click_id":"u9s-\\ud800","ad_id":"ad-1","ts":${NOW}}`,
      `{"click_id":"u9s-\\udfff","ad_id":"ad-1","ts":${NOW}}`,
      `{"click_id":"u9s-x","ad_id":"ad-1","ts":${NOW},"device":"\\ud83d"}`,
      `{"click_id":"u9s-\\ud83d\\ude00","ad_id":"ad-1","ts":${NOW}}`,
    ];
    const res = await post(lines.join('\n'));
    expect(res.status).toBe(200);
    expect(res.body.rejected.map((r: any) => [r.line, r.code])).toEqual([
      [1, 'bad_encoding'],
      [2, 'bad_encoding'],
      [3, 'bad_encoding'],
    ]);
    expect(published('u9s-')).toEqual(['u9s-\u{1F600}']);
  });

  it('defect 9: a JSON (not NDJSON) body that is not UTF-8 is 400 ADAGG_E_BAD_ENCODING', async () => {
    const body = Buffer.concat([Buffer.from('[{"click_id":"u9j-'), Buffer.from([0xc3, 0x28]), Buffer.from(`","ad_id":"ad-1","ts":${NOW}}]`)]);
    const res = await post(body, { 'content-type': 'application/json' });
    expect([res.status, res.body.code]).toEqual([400, ErrorCode.BadEncoding]);
    expect(published('u9j-')).toEqual([]);
  });

  it('defect 7: a too_old click with a deeply nested field is refused (too_deep) on its own line, in NDJSON and JSON bodies; good clicks are kept and dead letters stay stringifiable', async () => {
    const deep = `{"click_id":"d7-deep","ad_id":"ad-1","ts":${NOW - 2 * 3600_000},"x":${'['.repeat(50_000)}${']'.repeat(50_000)}}`;
    const nd = await post([clickLine('d7-a'), deep, clickLine('d7-b')].join('\n'));
    expect(nd.status).toBe(200);
    expect(nd.body).toEqual({ accepted: 2, rejected: [{ line: 2, code: 'too_deep', error: expect.any(String) }] });
    const json = await post(`[${clickLine('d7-c')},${deep}]`, { 'content-type': 'application/json' });
    expect(json.status).toBe(200);
    expect(json.body).toEqual({ accepted: 1, rejected: [{ line: 2, code: 'too_deep', error: expect.any(String) }] });
    // A moderately nested too_old click is still dead-lettered (and its JSON body record built).
    const nested = JSON.stringify({ click_id: 'd7-old', ad_id: 'ad-1', ts: NOW - 2 * 3600_000, x: [[[[1]]]] });
    const old = await post(`[${nested},${clickLine('d7-d')}]`, { 'content-type': 'application/json' });
    expect(old.body).toEqual({ accepted: 1, rejected: [{ line: 1, code: 'too_old', error: expect.any(String) }] });
    expect(g.letters.at(-1)?.raw).toContain('d7-old');
    expect(published('d7-')).toEqual(['d7-a', 'd7-b', 'd7-c', 'd7-d']);
  });

  it('defect 10: ts must be strict ISO-8601 or epoch ms: 30 February and GMT+0100 forms are invalid_ts, epoch ms (number or digits) and real dates work', async () => {
    const iso = (ms: number) => new Date(ms).toISOString();
    const lines = [
      clickLine('t10-feb30', { ts: '2026-02-30T00:00:00Z' }),
      clickLine('t10-gmt', { ts: 'Sun Nov 22 2026 04:00:00 GMT+0100' }),
      clickLine('t10-rfc', { ts: 'Sun, 22 Nov 2026 03:00:00 GMT' }),
      clickLine('t10-hour25', { ts: '2026-11-22T25:00:00Z' }),
      clickLine('t10-huge', { ts: 9_000_000_000_000_000 }),
      clickLine('t10-num', { ts: NOW - 1000 }),
      clickLine('t10-digits', { ts: String(NOW - 1000) }),
      clickLine('t10-iso', { ts: iso(NOW - 1000) }),
      clickLine('t10-offset', { ts: '2026-11-22T04:00:00+01:00' }),
    ];
    const res = await post(lines.join('\n'));
    expect(res.status).toBe(200);
    expect(res.body.rejected.map((r: any) => [r.line, r.code])).toEqual([
      [1, 'invalid_ts'],
      [2, 'invalid_ts'],
      [3, 'invalid_ts'],
      [4, 'invalid_ts'],
      [5, 'invalid_ts'],
    ]);
    expect(published('t10-')).toEqual(['t10-num', 't10-digits', 't10-iso', 't10-offset']);
    expect(g.published.find((c) => c.click_id === 't10-offset')?.ts).toBe(Date.UTC(2026, 10, 22, 3, 0, 0));
  });

  it('defect 10: at/from/to are strict too; at=9000000000000000 is 400 ADAGG_E_BAD_PARAM, not 500', async () => {
    for (const at of ['9000000000000000', '2026-02-30T00:00:00Z', 'Sun Nov 22 2026 04:00:00 GMT+0100', '99999999999999999999']) {
      expect(await errorOf({ method: 'GET', url: `/v1/ads/popular_ads?at=${encodeURIComponent(at)}` }), at).toEqual({ status: 400, code: ErrorCode.BadParam });
    }
    for (const from of ['2026-02-29T00:00:00Z', '2026-11-22 03:00:00 GMT+0100', '2026-13-01']) {
      expect((await errorOf({ method: 'GET', url: `/v1/ads/ad-1/aggregated_count?from=${encodeURIComponent(from)}&to=${T}` })).code, from).toBe(ErrorCode.BadParam);
    }
    const ok = await g.app.inject({ method: 'GET', url: `/v1/ads/ad-1/aggregated_count?from=${encodeURIComponent(new Date(F).toISOString())}&to=${T}` });
    expect(ok.statusCode).toBe(200);
  });

  it('defect 10: ad ids of 101-128 characters are queryable; 129+ is a coded 400, 300 a coded 414', async () => {
    for (const len of [101, 120, 128]) {
      const res = await g.app.inject({ method: 'GET', url: `/v1/ads/${'a'.repeat(len)}/aggregated_count?from=${F}&to=${T}` });
      expect(res.statusCode, String(len)).toBe(200);
      expect(res.json().ad_id).toBe('a'.repeat(len));
    }
    expect(await errorOf({ method: 'GET', url: `/v1/ads/${'a'.repeat(129)}/aggregated_count?from=${F}&to=${T}` })).toEqual({ status: 400, code: ErrorCode.BadParam });
    expect(await errorOf({ method: 'GET', url: `/v1/ads/${'a'.repeat(300)}/aggregated_count?from=${F}&to=${T}` })).toEqual({ status: 414, code: ErrorCode.UriTooLong });
  });

  it('defect 8 (REST): __proto__, constructor, toString and hasOwnProperty filters are refused, never answered unfiltered', async () => {
    const before = g.countFilters.length;
    for (const name of ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf']) {
      const count = await errorOf({ method: 'GET', url: `/v1/ads/ad-1/aggregated_count?from=${F}&to=${T}&${name}=US` });
      expect(count.status, name).toBe(400);
      expect([ErrorCode.FilterNotPreaggregated, ErrorCode.BadParam], name).toContain(count.code);
      const top = await errorOf({ method: 'GET', url: `/v1/ads/popular_ads?count=3&${name}=US` });
      expect(top.status, name).toBe(400);
    }
    // None of them reached the back end (the unfixed gateway asked it for the unfiltered count).
    expect(g.countFilters.length).toBe(before);
    const ok = await g.app.inject({ method: 'GET', url: `/v1/ads/ad-1/aggregated_count?from=${F}&to=${T}&country=us` });
    expect(ok.statusCode).toBe(200);
    expect(g.countFilters.at(-1)).toEqual({ dim: 'country', value: 'US' });
  });

  it('defect 10: gzip and deflate bodies are inflated; ADAGG_MAX_BODY_BYTES applies after inflation (a zip bomb is 413); other encodings are 415', async () => {
    const lines = [clickLine('gz-1'), clickLine('gz-2')].join('\n');
    const gz = await post(gzipSync(lines), { ...NDJSON, 'content-encoding': 'gzip' });
    expect([gz.status, gz.body.accepted]).toEqual([200, 2]);
    const df = await post(deflateSync([clickLine('df-1')].join('\n')), { ...NDJSON, 'content-encoding': 'deflate' });
    expect([df.status, df.body.accepted]).toEqual([200, 1]);
    const json = await post(gzipSync(`[${clickLine('gz-3')}]`), { 'content-type': 'application/json', 'content-encoding': 'gzip' });
    expect([json.status, json.body.accepted]).toEqual([200, 1]);
    // 64 MiB of zeros is ~64 KB gzipped: under the body limit as sent, far over it inflated.
    const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024));
    expect(bomb.length).toBeLessThan(1 << 20);
    expect(await errorOf({ method: 'POST', url: '/v1/clicks', headers: { ...NDJSON, 'content-encoding': 'gzip' }, payload: bomb })).toEqual({ status: 413, code: ErrorCode.BodyTooLarge });
    expect(await errorOf({ method: 'POST', url: '/v1/clicks', headers: { ...NDJSON, 'content-encoding': 'br' }, payload: lines })).toEqual({ status: 415, code: ErrorCode.UnsupportedMediaType });
    expect(await errorOf({ method: 'POST', url: '/v1/clicks', headers: { ...NDJSON, 'content-encoding': 'gzip' }, payload: 'not gzip at all' })).toEqual({ status: 400, code: ErrorCode.BadEncoding });
    expect(published('gz-').concat(published('df-'))).toEqual(['gz-1', 'gz-2', 'gz-3', 'df-1']);
  });

  it('defect 10: 431 and malformed-request answers from the HTTP server itself follow {code, error}', async () => {
    await g.app.listen({ port: 0, host: '127.0.0.1' });
    const addr = g.app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    const raw = (request: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const sock = netConnect({ host: '127.0.0.1', port });
        let out = '';
        sock.on('data', (d) => (out += d.toString()));
        sock.on('error', reject);
        sock.on('close', () => resolve(out));
        sock.end(request);
      });
    const parse = (res: string) => {
      const [head, body] = [res.slice(0, res.indexOf('\r\n\r\n')), res.slice(res.indexOf('\r\n\r\n') + 4)];
      return { status: Number(head.split(' ')[1]), body: JSON.parse(body) as Record<string, unknown> };
    };
    const big = parse(await raw(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`));
    expect(big.status).toBe(431);
    expect(Object.keys(big.body).sort()).toEqual(['code', 'error']);
    expect(big.body.code).toBe(ErrorCode.HeadersTooLarge);
    const longUrl = parse(await raw(`GET /v1/ads/popular_ads?x=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`));
    expect([longUrl.status, Object.keys(longUrl.body).sort()]).toEqual([431, ['code', 'error']]);
    const junk = parse(await raw('BLAH\r\n\r\n'));
    expect([junk.status, Object.keys(junk.body).sort()]).toEqual([400, ['code', 'error']]);
  });
});

describe('dead letters one by one (defect 7) and capped (defect 6)', () => {
  it('a dead-letter publish that fails is noted on its own line; the request, the good clicks and the other dead letters are unaffected', async () => {
    const { ClickIngest } = await import('../../src/ingest/click-ingest.ts');
    const { ManualClock } = await import('../../src/runtime/clock.ts');
    const { AdaggError } = await import('../../src/errors.ts');
    const published: string[] = [];
    const stored: string[] = [];
    const producer = { publish: async (clicks: Array<{ click_id: string }>) => (published.push(...clicks.map((c) => c.click_id)), { messages: 1, duplicates: 0 }) };
    const deadLetters = {
      publishEach: async (ls: ReadonlyArray<{ id: string; letter: { raw?: string | undefined } }>) =>
        ls.map(({ letter }) => {
          if (letter.raw?.includes('dl-fail')) return new AdaggError(ErrorCode.PublishFailed, 'maximum payload exceeded');
          stored.push(letter.raw ?? '');
          return undefined;
        }),
    };
    const ingest = new ClickIngest(producer as never, deadLetters as never, { correctionHorizonMs: 3600_000, maxFutureMs: 300_000 }, new ManualClock(NOW));
    const old = NOW - 2 * 3600_000;
    const items = [
      { line: 1, value: { click_id: 'ok-1', ad_id: 'ad-1', ts: NOW }, raw: 'x' },
      { line: 2, value: { click_id: 'dl-fail', ad_id: 'ad-1', ts: old }, raw: '{"click_id":"dl-fail"}' },
      { line: 3, value: { click_id: 'dl-ok', ad_id: 'ad-1', ts: old }, raw: '{"click_id":"dl-ok"}' },
      { line: 4, value: { click_id: 'ok-2', ad_id: 'ad-1', ts: NOW }, raw: 'y' },
    ];
    const res = await ingest.ingest(items, 'http');
    expect(res.accepted).toBe(2);
    expect(res.rejected.map((r) => [r.line, r.code])).toEqual([
      [2, 'too_old'],
      [3, 'too_old'],
    ]);
    expect(res.rejected[0]!.error).toContain(`not recorded in the dead-letter stream (${ErrorCode.PublishFailed})`);
    expect(res.rejected[1]!.error).not.toContain('not recorded');
    expect(published).toEqual(['ok-1', 'ok-2']);
    expect(stored).toEqual(['{"click_id":"dl-ok"}']);
  });

  it('capDeadLetter keeps the first 4 KB (cut at a UTF-8 boundary), the SHA-256 and byte length of the whole line', async () => {
    const { capDeadLetter, DEAD_LETTER_RAW_BYTES } = await import('../../src/runtime/dead-letter.ts');
    const { createHash } = await import('node:crypto');
    const raw = 'a' + '€'.repeat(10_000); // 3-byte characters: 4096 falls inside one
    const rec = capDeadLetter({ reason: 'too_old', error: 'e'.repeat(5000), source: 'http', at: NOW, raw });
    expect(Buffer.byteLength(rec.raw!)).toBeLessThanOrEqual(DEAD_LETTER_RAW_BYTES);
    expect(Buffer.byteLength(rec.raw!)).toBeGreaterThan(DEAD_LETTER_RAW_BYTES - 3);
    expect(raw.startsWith(rec.raw!)).toBe(true);
    expect(rec.raw_bytes).toBe(Buffer.byteLength(raw));
    expect(rec.raw_sha256).toBe(createHash('sha256').update(raw).digest('hex'));
    expect(rec.raw_truncated).toBe(true);
    expect(rec.error.length).toBeLessThanOrEqual(513);
    expect(JSON.stringify(rec).length).toBeLessThan(DEAD_LETTER_RAW_BYTES * 2);
    const small = capDeadLetter({ reason: 'too_old', error: 'e', source: 'http', at: NOW, raw: '{"a":1}' });
    expect(small).toMatchObject({ raw: '{"a":1}', raw_bytes: 7, raw_truncated: false });
  });
});
