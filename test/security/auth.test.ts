/**
 * Authentication and authorization on a real stack (runtime node + gateway on real nats-server and
 * redis-server): every route over HTTP, the WebSocket upgrade (header, subprotocol, origin) and
 * token reload. Defect 11 (issue 11): no route needed authentication; the WebSocket origin was not
 * checked (the door to defect 1).
 */
import { writeFile } from 'node:fs/promises';
import type { ClientRequest, IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { authGateway, concretePath, STANDARD, TOKENS, tempDir, tokensJson, writeTokensFile } from './auth-helpers.ts';

const PUBLIC_ROUTES = new Set(['GET /healthz', 'GET /readyz', 'GET /', 'GET /static/:file', 'OPTIONS *']);
const LISTED_ORIGIN = 'https://dash.example.com';

const bearer = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });

type WsOutcome = { opened: true; protocol: string; firstFrame: { type?: string } } | { opened: false; status: number; body: { code?: string } };

/** Opens a WebSocket and reports the first frame, or the HTTP refusal of the upgrade. */
function tryWs(url: string, opts: { headers?: Record<string, string>; protocols?: string[]; origin?: string } = {}): Promise<WsOutcome> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, opts.protocols ?? [], { headers: opts.headers ?? {}, ...(opts.origin ? { origin: opts.origin } : {}) });
    ws.once('message', (data) => {
      resolve({ opened: true, protocol: ws.protocol, firstFrame: JSON.parse(String(data)) as { type?: string } });
      ws.close();
    });
    ws.once('unexpected-response', (req: ClientRequest, res: IncomingMessage) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      // Resolved once the server has closed the connection too: a refused client holds none.
      const sock = req.socket;
      const closed = new Promise<void>((r) => (sock === null || sock.destroyed ? r() : sock.once('close', () => r())));
      res.on('end', () => void closed.then(() => resolve({ opened: false, status: res.statusCode ?? 0, body: JSON.parse(body || '{}') as { code?: string } })));
    });
    ws.once('error', (err) => reject(err));
  });
}

describe('auth on a real stack', () => {
  let stack: TestStack;
  let dir: string;
  let tokensFile: string;
  let ws: string;

  beforeAll(async () => {
    dir = await tempDir();
    tokensFile = await writeTokensFile(dir, STANDARD);
    stack = await startStack({ auth: 'on', tokensFile, allowedOrigins: [LISTED_ORIGIN] });
    ws = `${stack.url.replace('http', 'ws')}/v1/ws/popular_ads?count=5&window=1`;
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('answers 401 on every registered route without a token, over HTTP (public ones excepted)', async () => {
    const { app, routes } = authGateway({ mode: 'off', allowedOrigins: [] });
    await app.ready();
    await app.close();
    const seen: string[] = [];
    for (const r of routes) {
      for (const method of (Array.isArray(r.method) ? r.method : [r.method]).map(String)) {
        const key = `${method === 'HEAD' ? 'GET' : method} ${r.url}`;
        const res = await fetch(`${stack.url}${concretePath(r.url)}`, { method, ...(method === 'POST' ? { body: '{}', headers: { 'content-type': 'application/json' } } : {}) });
        await res.arrayBuffer();
        if (PUBLIC_ROUTES.has(key)) {
          expect([401, 403], key).not.toContain(res.status);
        } else {
          expect(res.status, `${method} ${r.url}`).toBe(401);
          expect(res.headers.get('www-authenticate'), key).toMatch(/^Bearer/);
          seen.push(key);
        }
      }
    }
    expect(seen).toEqual(expect.arrayContaining(['POST /v1/clicks', 'GET /v1/ads/popular_ads', 'POST /v1/queries', 'GET /metrics', 'GET /v1/status', 'GET /v1/ws/popular_ads']));
  });

  it('serves each scope its routes and refuses the others with 403 ADAGG_E_FORBIDDEN', async () => {
    const now = Date.now();
    const click = JSON.stringify({ click_id: `auth-${now}`, ad_id: 'auth-ad', ts: now });
    const post = (token: string) => fetch(`${stack.url}/v1/clicks`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'application/x-ndjson' }, body: click });
    const ingest = await post(TOKENS.ingest);
    expect(ingest.status).toBe(200);
    expect(await ingest.json()).toMatchObject({ accepted: 1 });
    const readPost = await post(TOKENS.read);
    expect(readPost.status).toBe(403);
    expect(await readPost.json()).toMatchObject({ code: 'ADAGG_E_FORBIDDEN' });

    const popular = await fetch(`${stack.url}/v1/ads/popular_ads?count=3`, { headers: bearer(TOKENS.read) });
    expect(popular.status).toBe(200);
    expect((await fetch(`${stack.url}/v1/ads/popular_ads`, { headers: bearer(TOKENS.ingest) })).status).toBe(403);
    expect((await fetch(`${stack.url}/metrics`, { headers: bearer(TOKENS.metrics) })).status).toBe(200);
    expect((await fetch(`${stack.url}/metrics`, { headers: bearer(TOKENS.read) })).status).toBe(403);
    expect((await fetch(`${stack.url}/v1/status`, { headers: bearer(TOKENS.admin) })).status).toBe(200);

    const job = { kind: 'ad_count', ad_id: 'auth-ad', from: now - 60_000, to: now + 60_000, filter: { user_id: 'u1' } };
    const submit = (token: string) => fetch(`${stack.url}/v1/queries`, { method: 'POST', headers: { ...bearer(token), 'content-type': 'application/json' }, body: JSON.stringify(job) });
    const jobRes = await submit(TOKENS.jobs);
    expect([401, 403]).not.toContain(jobRes.status);
    expect(jobRes.status).toBeLessThan(500);
    expect((await submit(TOKENS.read)).status).toBe(403);
  });

  it('authenticates the WebSocket upgrade by header or by the bearer.<token> subprotocol', async () => {
    const byHeader = await tryWs(ws, { headers: bearer(TOKENS.read) });
    expect(byHeader).toMatchObject({ opened: true, firstFrame: { type: 'subscribed' } });
    const byProtocol = await tryWs(ws, { protocols: ['adagg', `bearer.${TOKENS.read}`] });
    // The token entry is consumed: the server picks `adagg`, never echoes the token.
    expect(byProtocol).toMatchObject({ opened: true, protocol: 'adagg', firstFrame: { type: 'subscribed' } });
    const admin = await tryWs(ws, { protocols: [`bearer.${TOKENS.admin}`, 'adagg'] });
    expect(admin).toMatchObject({ opened: true, protocol: 'adagg' });
  });

  it('refuses the WebSocket upgrade without a token (401), with a wrong scope or a foreign Origin (403)', async () => {
    expect(await tryWs(ws)).toMatchObject({ opened: false, status: 401, body: { code: 'ADAGG_E_UNAUTHENTICATED' } });
    expect(await tryWs(ws, { protocols: ['adagg', 'bearer.wrong-token'] })).toMatchObject({ opened: false, status: 401 });
    expect(await tryWs(ws, { headers: bearer(TOKENS.metrics) })).toMatchObject({ opened: false, status: 403, body: { code: 'ADAGG_E_FORBIDDEN' } });
    // A page elsewhere, even holding a valid token, is refused before authentication.
    expect(await tryWs(ws, { headers: bearer(TOKENS.read), origin: 'https://evil.example' })).toMatchObject({
      opened: false,
      status: 403,
      body: { code: 'ADAGG_E_ORIGIN_NOT_ALLOWED' },
    });
    expect(await tryWs(ws, { origin: 'https://evil.example' })).toMatchObject({ opened: false, status: 403, body: { code: 'ADAGG_E_ORIGIN_NOT_ALLOWED' } });
  });

  it('accepts the WebSocket from the same origin and from ADAGG_ALLOWED_ORIGINS', async () => {
    expect(await tryWs(ws, { headers: bearer(TOKENS.read), origin: stack.url })).toMatchObject({ opened: true });
    expect(await tryWs(ws, { headers: bearer(TOKENS.read), origin: LISTED_ORIGIN })).toMatchObject({ opened: true });
  });

  it('reloads the tokens: a removed token stops working, a new one works, a bad file keeps the old set', async () => {
    const fresh = 'tok-fresh-after-reload';
    const status = async (token: string): Promise<number> => (await fetch(`${stack.url}/v1/status`, { headers: bearer(token) })).status;
    expect(await status(TOKENS.read)).toBe(200);
    expect(await status(fresh)).toBe(401);
    const next = [...STANDARD.filter((t) => t.name !== 'only-read'), { name: 'fresh', token: fresh, scopes: ['read' as const] }];
    await writeFile(tokensFile, tokensJson(next));
    expect(await stack.gateway.reloadTokens()).toBe(true);
    expect(await status(TOKENS.read)).toBe(401);
    expect(await status(fresh)).toBe(200);
    expect((await tryWs(ws, { protocols: ['adagg', `bearer.${fresh}`] })).opened).toBe(true);
    expect(await tryWs(ws, { headers: bearer(TOKENS.read) })).toMatchObject({ opened: false, status: 401 });

    await writeFile(tokensFile, '{"tokens":[{"name":"oops","sha256":"not-hex","scopes":["read"]}]}');
    expect(await stack.gateway.reloadTokens()).toBe(false);
    expect(await status(fresh)).toBe(200);
    expect(await status(TOKENS.admin)).toBe(200);
  });
});
