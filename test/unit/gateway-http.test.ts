import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.ts';
import { offlineGateway } from '../helpers/offline-gateway.ts';

/**
 * What the gateway answers before any back end is involved: route schemas refuse bad parameters
 * and bodies with the README's codes, and every error fastify itself raises (unknown route, a URL
 * the router cannot decode, a body over the limit) leaves as `{code, error}`.
 */

const MIN = 60_000;
const F = Date.UTC(2026, 10, 22, 3, 0);
const T = F + MIN;

describe('gateway errors are {code, error}', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = offlineGateway();
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
  });

  async function errorOf(req: InjectOptions): Promise<{ status: number; code: string; error: string }> {
    const res = await app.inject(req);
    const body = res.json<Record<string, unknown>>();
    expect(Object.keys(body).sort(), JSON.stringify(body)).toEqual(['code', 'error']);
    expect(typeof body.error).toBe('string');
    return { status: res.statusCode, code: body.code as string, error: body.error as string };
  }

  it('404 for an unknown route', async () => {
    expect(await errorOf({ method: 'GET', url: '/v1/nope?x=1' })).toEqual({ status: 404, code: ErrorCode.NotFound, error: 'no route GET /v1/nope' });
    expect((await errorOf({ method: 'DELETE', url: '/v1/clicks' })).code).toBe(ErrorCode.NotFound);
    expect((await errorOf({ method: 'GET', url: '/static/..%2Fserver.ts' })).code).toBe(ErrorCode.NotFound);
  });

  it('400 for a URL the router cannot decode, 414 ADAGG_E_URI_TOO_LONG for a path parameter over the router limit', async () => {
    const e = await errorOf({ method: 'GET', url: '/v1/ads/%E0%A4%A/aggregated_count' });
    expect(e.status).toBe(400);
    expect(e.code).toBe(ErrorCode.BadParam);
    const long = await errorOf({ method: 'GET', url: `/v1/ads/${'a'.repeat(300)}/aggregated_count?from=${F}&to=${T}` });
    expect([long.status, long.code]).toEqual([414, ErrorCode.UriTooLong]);
  });

  it('every valid ad id (up to 128 characters) passes the route schema', async () => {
    // The offline gateway has no back end: a request that passed validation fails there, with 500.
    const res = await app.inject({ method: 'GET', url: `/v1/ads/${'a'.repeat(128)}/aggregated_count?from=${F}&to=${T}` });
    expect([res.statusCode, res.json().code]).toEqual([500, ErrorCode.Internal]);
  });

  it('413 for a body over maxBodyBytes, 415 for an unsupported content type', async () => {
    const big = await errorOf({ method: 'POST', url: '/v1/clicks', headers: { 'content-type': 'application/x-ndjson' }, payload: 'x'.repeat(5000) });
    expect([big.status, big.code]).toEqual([413, ErrorCode.BodyTooLarge]);
    const bigJob = await errorOf({ method: 'POST', url: '/v1/queries', headers: { 'content-type': 'application/json' }, payload: `{"pad":"${'x'.repeat(5000)}"}` });
    expect([bigJob.status, bigJob.code]).toEqual([413, ErrorCode.BodyTooLarge]);
    const csv = await errorOf({ method: 'POST', url: '/v1/clicks', headers: { 'content-type': 'text/csv' }, payload: 'click_id,ad_id\nc1,a1' });
    expect([csv.status, csv.code]).toEqual([415, ErrorCode.UnsupportedMediaType]);
    const lines = Array.from({ length: 51 }, (_, i) => JSON.stringify({ click_id: `l${i}`, ad_id: 'a', ts: F }));
    const many = await errorOf({ method: 'POST', url: '/v1/clicks', headers: { 'content-type': 'application/x-ndjson' }, payload: lines.join('\n') });
    expect([many.status, many.code]).toEqual([413, ErrorCode.TooManyLines]);
  });

  it('query parameters: 400 with the exact code, the message naming the parameter', async () => {
    const base = '/v1/ads/ing-1/aggregated_count';
    const cases: Array<[string, string, string]> = [
      [`${base}?to=${T}`, ErrorCode.BadParam, 'from'],
      [`${base}?from=${F}`, ErrorCode.BadParam, 'to'],
      [`${base}?from=yesterday&to=${T}`, ErrorCode.BadParam, 'from'],
      [`${base}?from=${F}&to=soon`, ErrorCode.BadParam, 'to'],
      [`${base}?from=${F}&to=2026-99-99T00:00:00Z`, ErrorCode.BadParam, 'to'],
      [`${base}?from=${F}&to=-60000`, ErrorCode.BadParam, 'to'],
      [`${base}?from=${F}&to=${F}`, ErrorCode.BadParam, 'to'],
      [`${base}?from=${T}&to=${F}`, ErrorCode.BadParam, 'to'],
      [`${base}?from=${F}&to=${F + 30_000}`, ErrorCode.BadParam, 'to'],
      [`${base}?from=${F}&from=${F}&to=${T}`, ErrorCode.BadParam, 'from'],
      [`${base}?from=0&to=${T}`, ErrorCode.RangeTooLarge, 'range'],
      [`${base}?from=${F - 10_081 * MIN}&to=${F}`, ErrorCode.RangeTooLarge, '10081'],
      [`${base}?from=${F}&to=${T}&user_id=u1`, ErrorCode.FilterNotPreaggregated, 'user_id'],
      [`${base}?from=${F}&to=${T}&country=US&user_id=u1`, ErrorCode.FilterNotPreaggregated, 'user_id'],
      [`${base}?from=${F}&to=${T}&country=US&device=ios&ip=1.2.3.4`, ErrorCode.FilterNotPreaggregated, 'ip'],
      [`${base}?from=${F}&to=${T}&country=`, ErrorCode.BadParam, 'country'],
      [`${base}?from=${F}&to=${T}&country=US&country=DE`, ErrorCode.BadParam, 'country'],
      [`${base}?from=${F}&to=${T}&country=${'x'.repeat(65)}`, ErrorCode.BadParam, 'country'],
      [`/v1/ads/bad%20id/aggregated_count?from=${F}&to=${T}`, ErrorCode.BadParam, 'ad_id'],
      [`/v1/ads/${'a'.repeat(129)}/aggregated_count?from=${F}&to=${T}`, ErrorCode.BadParam, 'ad_id'],
      ['/v1/ads/popular_ads?count=0', ErrorCode.BadParam, 'count'],
      ['/v1/ads/popular_ads?count=abc', ErrorCode.BadParam, 'count'],
      ['/v1/ads/popular_ads?count=%205', ErrorCode.BadParam, 'count'],
      ['/v1/ads/popular_ads?count=1e2', ErrorCode.BadParam, 'count'],
      ['/v1/ads/popular_ads?count=1001', ErrorCode.BadParam, 'count'],
      ['/v1/ads/popular_ads?count=99999999999999999999', ErrorCode.BadParam, 'count'],
      ['/v1/ads/popular_ads?count=5&count=6', ErrorCode.BadParam, 'count'],
      ['/v1/ads/popular_ads?window=0', ErrorCode.BadParam, 'window'],
      ['/v1/ads/popular_ads?window=10081', ErrorCode.BadParam, 'window'],
      ['/v1/ads/popular_ads?at=later', ErrorCode.BadParam, 'at'],
      ['/v1/ads/popular_ads?count=5&user_id=u1', ErrorCode.FilterNotPreaggregated, 'user_id'],
      ['/v1/ads/popular_ads?count=5&from=1', ErrorCode.FilterNotPreaggregated, 'from'],
    ];
    for (const [url, code, named] of cases) {
      const e = await errorOf({ method: 'GET', url });
      expect({ url, status: e.status, code: e.code }).toEqual({ url, status: 400, code });
      expect(e.error, url).toContain(named);
    }
  });

  it('POST /v1/queries: bad bodies are 400 with the exact code, values are taken as sent', async () => {
    const ok = { kind: 'aggregated_count', ad_id: 'ad-1', from: F, to: T, filter: { user_id: 'u1' } };
    const top = { kind: 'popular_ads', from: F, to: T };
    const post = (body: unknown): Promise<{ status: number; code: string; error: string }> =>
      errorOf({ method: 'POST', url: '/v1/queries', headers: { 'content-type': 'application/json' }, payload: typeof body === 'string' ? body : JSON.stringify(body) });
    const cases: Array<[unknown, string, string]> = [
      ['', ErrorCode.BadParam, 'body'],
      ['{"kind"', ErrorCode.BadParam, 'JSON'],
      ['"nope"', ErrorCode.BadParam, 'body'],
      ['null', ErrorCode.BadParam, 'body'],
      [[ok], ErrorCode.BadParam, 'body'],
      [{ ...ok, kind: 'count' }, ErrorCode.BadParam, 'kind'],
      [{ from: F, to: T }, ErrorCode.BadParam, 'kind'],
      [{ ...ok, ad_id: undefined }, ErrorCode.BadParam, 'ad_id'],
      [{ ...ok, ad_id: 'bad id!' }, ErrorCode.BadParam, 'ad_id'],
      [{ ...ok, ad_id: 5 }, ErrorCode.BadParam, 'ad_id'],
      [{ ...ok, from: 'yesterday' }, ErrorCode.BadParam, 'from'],
      [{ ...ok, from: -5 }, ErrorCode.BadParam, 'from'],
      [{ ...ok, from: true }, ErrorCode.BadParam, 'from'],
      [{ ...ok, to: undefined }, ErrorCode.BadParam, 'to'],
      [{ ...ok, to: F + 59_000 }, ErrorCode.BadParam, 'to'],
      [{ ...ok, count: 5 }, ErrorCode.BadParam, 'count'],
      [{ ...ok, extra: 1 }, ErrorCode.BadParam, 'extra'],
      [{ ...ok, filter: 'user_id=u1' }, ErrorCode.BadParam, 'filter'],
      [{ ...ok, filter: { user_id: 5 } }, ErrorCode.BadParam, 'filter.user_id'],
      [{ ...ok, filter: { user_id: '' } }, ErrorCode.BadParam, 'filter.user_id'],
      [{ ...ok, filter: { 'country+device': 'US' } }, ErrorCode.BadParam, 'country+device'],
      [{ ...ok, filter: { click_id: 'c1' } }, ErrorCode.BadParam, 'click_id'],
      [{ ...ok, filter: { ad_id: 'ad-2' } }, ErrorCode.BadParam, 'ad_id'],
      [{ ...ok, to: F + 1441 * MIN }, ErrorCode.RangeTooLarge, '1441'],
      [{ ...top, count: 0 }, ErrorCode.BadParam, 'count'],
      [{ ...top, count: 1001 }, ErrorCode.BadParam, 'count'],
      [{ ...top, count: 2.5 }, ErrorCode.BadParam, 'count'],
      [{ ...top, count: '5' }, ErrorCode.BadParam, 'count'],
      [{ ...top, count: [5] }, ErrorCode.BadParam, 'count'],
      [{ ...top, ad_id: 'ad-1' }, ErrorCode.BadParam, 'ad_id'],
    ];
    for (const [body, code, named] of cases) {
      const e = await post(body);
      expect({ body, status: e.status, code: e.code }).toEqual({ body, status: 400, code });
      expect(e.error, JSON.stringify(body)).toContain(named);
    }
  });

  it('GET /v1/queries/{id}: 404 for an unknown job', async () => {
    const e = await errorOf({ method: 'GET', url: '/v1/queries/q_nope' });
    expect([e.status, e.code]).toEqual([404, ErrorCode.NotFound]);
  });
});
