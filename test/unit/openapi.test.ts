import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.ts';
import { httpStatusOf } from '../../src/gateway/error-status.ts';
import { offlineGateway } from '../helpers/offline-gateway.ts';

/**
 * `GET /openapi.json` lists every route the gateway registers, with its parameters, and names every
 * error code the HTTP API can answer. The gateway is built without NATS or Redis: nothing here
 * reaches a handler that needs them.
 */

/** Codes the operator CLI answers, never the gateway (docs/api.md, "Error codes"). */
const CLI_ONLY: ReadonlySet<string> = new Set([ErrorCode.PlacementConflict, ErrorCode.UnknownShard, ErrorCode.UnknownNode, ErrorCode.NodeNotAlive]);

interface Operation {
  parameters?: Array<{ name: string; in: string; required?: boolean }>;
  requestBody?: { content: Record<string, unknown> };
  responses: Record<string, { description: string }>;
}
type Doc = { openapi: string; paths: Record<string, Record<string, Operation>> };

describe('GET /openapi.json', () => {
  let app: FastifyInstance;
  const routes: Array<{ method: string; url: string }> = [];
  let doc: Doc;

  beforeAll(async () => {
    app = offlineGateway();
    // Routes are registered when the gateway's plugins load (ready), after this hook is in place.
    app.addHook('onRoute', (r) => {
      // Hidden routes are not API: @fastify/cors's `OPTIONS *` (preflights).
      if (r.schema?.hide === true) return;
      for (const m of [r.method].flat()) if (m !== 'HEAD') routes.push({ method: m.toLowerCase(), url: r.url });
    });
    await app.ready();
    const res = await app.inject({ method: 'GET', url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    doc = res.json<Doc>();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('is an OpenAPI 3 document listing every registered route (and nothing else)', () => {
    expect(doc.openapi).toMatch(/^3\./);
    expect(routes.length).toBeGreaterThanOrEqual(12);
    const registered = routes.map((r) => `${r.method} ${r.url.replace(/:(\w+)/g, '{$1}')}`).sort();
    const documented = Object.entries(doc.paths)
      .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`))
      .sort();
    expect(documented).toEqual(registered);
    for (const must of ['post /v1/clicks', 'get /v1/ads/{ad_id}/aggregated_count', 'get /v1/ads/popular_ads', 'get /v1/ws/popular_ads', 'post /v1/queries', 'get /v1/queries/{id}', 'get /openapi.json']) {
      expect(documented).toContain(must);
    }
  });

  it('lists each route’s parameters, configured dimensions included', () => {
    const names = (path: string, method = 'get'): string[] => (doc.paths[path]?.[method]?.parameters ?? []).map((p) => `${p.in}:${p.name}${p.required ? '!' : ''}`).sort();
    expect(names('/v1/ads/{ad_id}/aggregated_count')).toEqual(['path:ad_id!', 'query:country', 'query:device', 'query:from!', 'query:granularity', 'query:to!']);
    expect(names('/v1/ads/popular_ads')).toEqual(['query:at', 'query:count', 'query:country', 'query:device', 'query:granularity', 'query:window']);
    expect(names('/v1/ws/popular_ads')).toEqual(['query:count', 'query:country', 'query:device', 'query:window']);
    expect(names('/v1/queries/{id}')).toEqual(['path:id!']);
    expect(Object.keys(doc.paths['/v1/queries']!.post!.requestBody!.content)).toContain('application/json');
    expect(Object.keys(doc.paths['/v1/clicks']!.post!.requestBody!.content).sort()).toEqual(['application/json', 'application/x-ndjson']);
  });

  it('names every error code the HTTP API can answer, each under its HTTP status', () => {
    const text = JSON.stringify(doc);
    const httpCodes = Object.values(ErrorCode).filter((c) => (httpStatusOf(c) !== 500 || c === ErrorCode.Internal) && !CLI_ONLY.has(c));
    expect(httpCodes).toEqual(expect.arrayContaining([ErrorCode.BadParam, ErrorCode.NotFound, ErrorCode.ScanLimit, ErrorCode.Internal]));
    for (const code of httpCodes) expect(text, code).toContain(code);
    // Where a response names a code, it is the response of that code's status.
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, r] of Object.entries(op.responses)) {
          for (const code of r.description.match(/ADAGG_E_[A-Z_]+/g) ?? []) {
            if (Number(status) >= 400) expect(httpStatusOf(code), `${method} ${path} ${status} ${code}`).toBe(Number(status));
          }
        }
      }
    }
    const clicks = doc.paths['/v1/clicks']!.post!.responses;
    expect(clicks['413']!.description).toContain(ErrorCode.BodyTooLarge);
    expect(clicks['413']!.description).toContain(ErrorCode.TooManyLines);
    expect(clicks['415']!.description).toContain(ErrorCode.UnsupportedMediaType);
    expect(clicks['503']!.description).toContain(ErrorCode.PublishFailed);
    const count = doc.paths['/v1/ads/{ad_id}/aggregated_count']!.get!.responses;
    expect(count['400']!.description).toContain(ErrorCode.FilterNotPreaggregated);
    expect(count['400']!.description).toContain(ErrorCode.RangeTooLarge);
    expect(doc.paths['/v1/queries']!.post!.responses['429']!.description).toContain(ErrorCode.TooManyJobs);
    expect(doc.paths['/v1/queries/{id}']!.get!.responses['404']!.description).toContain(ErrorCode.NotFound);
  });

  it('every API route documents its errors (a 5xx at least)', () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      if (!path.startsWith('/v1/') || path.startsWith('/v1/ws/')) continue;
      for (const [method, op] of Object.entries(ops)) {
        expect(Object.keys(op.responses).filter((s) => Number(s) >= 400), `${method} ${path}`).not.toEqual([]);
      }
    }
  });
});
