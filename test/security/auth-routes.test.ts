/**
 * Authorization of every route, answered before any back end is asked: the real gateway (routes,
 * schemas, hooks) with tokens and no NATS or Redis. Defect 11 (issue 11): no route needed
 * authentication, and a text/plain POST from any web origin was accepted without a preflight.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TokenStore } from '../../src/gateway/auth/token-store.ts';
import { PUBLIC, requiredScope } from '../../src/gateway/auth/route-scopes.ts';
import { SCOPES, principalOf, type Scope } from '../../src/gateway/principal.ts';
import { authGateway, concretePath, STANDARD, TOKENS, tempDir, writeTokensFile } from './auth-helpers.ts';

/** What a route answers without a token when it is public: anything but 401/403. */
const PUBLIC_ROUTES = ['GET /healthz', 'GET /readyz', 'GET /', 'GET /static/:file', 'OPTIONS *'];

function methodsOf(r: RouteOptions): string[] {
  return (Array.isArray(r.method) ? r.method : [r.method]).map(String);
}

describe('every route needs a bearer token (auth on)', () => {
  let app: FastifyInstance;
  let routes: RouteOptions[];
  /** Every registered route as [method, url], HEAD included. */
  let all: Array<[string, string]>;

  beforeAll(async () => {
    const dir = await tempDir();
    const tokens = await TokenStore.open(await writeTokensFile(dir, STANDARD));
    ({ app, routes } = authGateway({ mode: 'on', tokens, allowedOrigins: ['https://dash.example.com'] }));
    // A route nobody put in the scope table: it must need admin (fail closed).
    void app.register(async (scoped) => {
      scoped.get('/v1/unlisted', async () => ({ ok: true }));
    });
    await app.ready();
    all = routes.flatMap((r) => methodsOf(r).map((m): [string, string] => [m, r.url]));
  });
  afterAll(async () => {
    await app?.close();
  });

  it('enumerates the routes it guards (onRoute)', () => {
    const keys = all.map(([m, u]) => `${m} ${u}`);
    for (const k of ['POST /v1/clicks', 'GET /v1/ads/popular_ads', 'GET /v1/ws/popular_ads', 'POST /v1/queries', 'GET /metrics', 'GET /v1/status', 'GET /openapi.json']) {
      expect(keys).toContain(k);
    }
    expect(all.length).toBeGreaterThan(12);
  });

  it('answers 401 ADAGG_E_UNAUTHENTICATED with WWW-Authenticate on every non-public route without a token', async () => {
    const checked: string[] = [];
    for (const [method, url] of all) {
      const key = `${method === 'HEAD' ? 'GET' : method} ${url}`;
      const res = await app.inject({ method: method as 'GET', url: concretePath(url), ...(method === 'POST' ? { payload: '{}', headers: { 'content-type': 'application/json' } } : {}) });
      if (PUBLIC_ROUTES.includes(key)) {
        expect(res.statusCode, key).not.toBe(401);
        expect(res.statusCode, key).not.toBe(403);
        continue;
      }
      expect(res.statusCode, `${method} ${url}`).toBe(401);
      expect(res.headers['www-authenticate'], key).toMatch(/^Bearer realm="adagg"/);
      if (method !== 'HEAD') expect(res.json(), key).toMatchObject({ code: 'ADAGG_E_UNAUTHENTICATED', error: expect.any(String) });
      checked.push(key);
    }
    expect(checked.length).toBeGreaterThan(8);
  });

  it('answers 401 to an unknown token and to another scheme', async () => {
    const unknown = await app.inject({ url: '/v1/status', headers: { authorization: 'Bearer not-a-token' } });
    expect(unknown.statusCode).toBe(401);
    expect(unknown.json().code).toBe('ADAGG_E_UNAUTHENTICATED');
    expect(unknown.headers['www-authenticate']).toContain('invalid_token');
    const basic = await app.inject({ url: '/v1/status', headers: { authorization: `Basic ${Buffer.from(`x:${TOKENS.admin}`).toString('base64')}` } });
    expect(basic.statusCode).toBe(401);
    // The token must be the whole credential, not a prefix of it.
    const prefixed = await app.inject({ url: '/v1/status', headers: { authorization: `Bearer ${TOKENS.admin}x` } });
    expect(prefixed.statusCode).toBe(401);
  });

  it('gives each route exactly its scope: 403 ADAGG_E_FORBIDDEN for any other, admin for all', async () => {
    for (const [method, url] of all) {
      const need = requiredScope(method, url);
      if (need === PUBLIC) continue;
      for (const scope of SCOPES) {
        const res = await app.inject({
          method: method as 'GET',
          url: concretePath(url),
          headers: { authorization: `Bearer ${TOKENS[scope]}`, ...(method === 'POST' ? { 'content-type': 'application/json' } : {}) },
          ...(method === 'POST' ? { payload: '{}' } : {}),
        });
        const key = `${scope} → ${method} ${url}`;
        if (scope === need || scope === 'admin') {
          expect([401, 403], key).not.toContain(res.statusCode);
        } else {
          expect(res.statusCode, key).toBe(403);
          if (method !== 'HEAD') expect(res.json(), key).toMatchObject({ code: 'ADAGG_E_FORBIDDEN' });
        }
      }
    }
  });

  it('maps the contract routes onto their scopes', () => {
    const expected: Record<string, Scope | typeof PUBLIC> = {
      'POST /v1/clicks': 'ingest',
      'GET /v1/ads/:ad_id/aggregated_count': 'read',
      'GET /v1/ads/popular_ads': 'read',
      'GET /v1/ads/:ad_id/invalid': 'read',
      'GET /v1/risk/offenders': 'read',
      'GET /v1/status': 'read',
      'GET /openapi.json': 'read',
      'GET /v1/ws/popular_ads': 'read',
      'POST /v1/queries': 'jobs',
      'GET /v1/queries/:id': 'jobs',
      'GET /v1/queries': 'jobs',
      'DELETE /v1/queries/:id': 'jobs',
      'GET /metrics': 'metrics',
      'GET /healthz': PUBLIC,
      'GET /readyz': PUBLIC,
      'GET /': PUBLIC,
      'GET /static/:file': PUBLIC,
      'GET /v1/unlisted': 'admin',
      'POST /v1/admin/anything': 'admin',
    };
    for (const [key, scope] of Object.entries(expected)) {
      const [method, url] = key.split(' ') as [string, string];
      expect(requiredScope(method, url), key).toBe(scope);
    }
  });

  it('fails closed: a route missing from the table needs admin', async () => {
    const read = await app.inject({ url: '/v1/unlisted', headers: { authorization: `Bearer ${TOKENS.read}` } });
    expect(read.statusCode).toBe(403);
    expect(read.json().code).toBe('ADAGG_E_FORBIDDEN');
    const admin = await app.inject({ url: '/v1/unlisted', headers: { authorization: `Bearer ${TOKENS.admin}` } });
    expect(admin.statusCode).toBe(200);
  });

  it('answers an unknown URL 401 without a token and 404 with any valid one', async () => {
    expect((await app.inject({ url: '/v1/nothing-here' })).statusCode).toBe(401);
    const res = await app.inject({ url: '/v1/nothing-here', headers: { authorization: `Bearer ${TOKENS.metrics}` } });
    expect(res.statusCode).toBe(404);
    expect(res.json().code).toBe('ADAGG_E_NOT_FOUND');
  });

  it('serves the dashboard files without a token', async () => {
    for (const url of ['/', '/static/app.js', '/static/style.css', '/healthz', '/readyz']) {
      expect((await app.inject({ url })).statusCode, url).toBe(200);
    }
  });

  it('sets the principal to the token named in the file', async () => {
    const seen: string[] = [];
    const probe = authGateway({ mode: 'on', tokens: await TokenStore.open(await writeTokensFile(await tempDir(), STANDARD)), allowedOrigins: [] });
    probe.app.addHook('preHandler', async (req) => {
      seen.push(`${principalOf(req).name}:${[...principalOf(req).scopes].join('+')}`);
    });
    await probe.app.ready();
    await probe.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKENS.metrics}` } });
    await probe.app.inject({ url: '/metrics', headers: { authorization: `Bearer ${TOKENS.admin}` } });
    await probe.app.close();
    expect(seen).toEqual(['only-metrics:metrics', `only-admin:${SCOPES.join('+')}`]);
  });
});

describe('origins and CORS (with auth off as with auth on)', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    ({ app } = authGateway({ mode: 'off', allowedOrigins: ['https://dash.example.com'] }));
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('refuses a simple text/plain POST from another web origin: 403 ADAGG_E_ORIGIN_NOT_ALLOWED', async () => {
    const res = await app.inject({
      method: 'POST',
      url: '/v1/clicks',
      headers: { origin: 'https://evil.example', 'content-type': 'text/plain', host: 'localhost:8080' },
      payload: '{"click_id":"c1","ad_id":"ad1","ts":1}',
    });
    expect(res.statusCode).toBe(403);
    expect(res.json()).toMatchObject({ code: 'ADAGG_E_ORIGIN_NOT_ALLOWED', error: expect.any(String) });
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('refuses the opaque origin "null" (sandboxed frames, file: pages) and a look-alike host', async () => {
    for (const origin of ['null', 'http://localhost:8080.evil.example', 'http://localhost:8081', 'http://localhost', 'ftp://localhost:8080']) {
      const res = await app.inject({ url: '/v1/status', headers: { origin, host: 'localhost:8080' } });
      expect(res.statusCode, origin).toBe(403);
    }
  });

  it('lets same-origin, listed-origin and origin-less (non-browser) requests through', async () => {
    const ok = (r: { statusCode: number }): boolean => r.statusCode !== 403;
    expect(ok(await app.inject({ url: '/healthz', headers: { origin: 'http://localhost:8080', host: 'localhost:8080' } }))).toBe(true);
    expect(ok(await app.inject({ url: '/healthz', headers: { origin: 'http://LOCALHOST:8080', host: 'localhost:8080' } }))).toBe(true);
    expect(ok(await app.inject({ url: '/healthz', headers: { origin: 'http://example.org', host: 'example.org:80' } }))).toBe(true);
    expect(ok(await app.inject({ url: '/healthz' }))).toBe(true);
    const listed = await app.inject({ url: '/healthz', headers: { origin: 'https://dash.example.com', host: 'api.example.com' } });
    expect(listed.statusCode).toBe(200);
    expect(listed.headers['access-control-allow-origin']).toBe('https://dash.example.com');
  });

  it('answers a preflight from a listed origin (explicit, no wildcard) and refuses one from elsewhere', async () => {
    const pre = (origin: string) =>
      app.inject({
        method: 'OPTIONS',
        url: '/v1/clicks',
        headers: { origin, host: 'api.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
      });
    const good = await pre('https://dash.example.com');
    expect(good.statusCode).toBe(204);
    expect(good.headers['access-control-allow-origin']).toBe('https://dash.example.com');
    expect(String(good.headers['access-control-allow-headers'])).toContain('authorization');
    const bad = await pre('https://evil.example');
    expect(bad.statusCode).toBe(403);
    expect(bad.json().code).toBe('ADAGG_E_ORIGIN_NOT_ALLOWED');
    expect(bad.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('keeps auth off open to non-browser clients (no token asked)', async () => {
    expect((await app.inject({ url: '/openapi.json' })).statusCode).toBe(200);
  });
});
