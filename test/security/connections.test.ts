/**
 * Issue 11, defect 4: connections are bounded in number (per client address and in total) and in
 * time (headers, whole request, idle keep-alive, silent WebSocket peers). Real sockets against an
 * in-process stack with small limits; clients on other loopback addresses (127.0.0.x) stand for
 * other clients.
 */
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ErrorCode } from '../../src/errors.ts';
import { startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';

/** Time allowed beyond a configured bound on a busy 2-core machine. */
const HEADROOM_MS = 3000;

interface RawResult {
  data: string;
  /** From connect to the server closing the socket. */
  ms: number;
}

/** A raw TCP client: writes `chunks` (one every `everyMs`) and collects everything until closed. */
function raw(port: number, opts: { from?: string; chunks?: string[]; everyMs?: number; timeoutMs?: number } = {}): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: opts.from ?? '127.0.0.1' });
    let data = '';
    let timer: NodeJS.Timeout | undefined;
    const chunks = [...(opts.chunks ?? [])];
    const next = (): void => {
      const c = chunks.shift();
      if (c === undefined || socket.destroyed) return;
      socket.write(c);
      timer = setTimeout(next, opts.everyMs ?? 0);
    };
    socket.on('connect', next);
    socket.on('data', (d) => (data += String(d)));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      clearTimeout(guard);
      resolve({ data, ms: Date.now() - started });
    });
    const guard = setTimeout(() => {
      socket.destroy();
      reject(new Error(`socket still open after ${opts.timeoutMs ?? 60_000} ms; received ${JSON.stringify(data.slice(0, 200))}`));
    }, opts.timeoutMs ?? 60_000);
  });
}

/** Opens a raw socket that sends nothing, and resolves once the server holds it. */
function idleSocket(port: number, from: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from });
    s.on('error', () => undefined);
    s.once('connect', () => resolve(s));
    s.once('close', () => reject(new Error('closed before connecting')));
  });
}

/** One GET on a fresh connection from `from`: status and JSON body. */
function get(port: number, path: string, from: string): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, localAddress: from, agent: false }, (res) => {
      let text = '';
      res.on('data', (d) => (text += String(d)));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text ? JSON.parse(text) : undefined }));
    });
    req.on('error', reject);
  });
}

/** A WebSocket from `from`: resolves open, or rejects with the HTTP status it was refused with. */
function openWs(port: number, from: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/v1/ws/popular_ads?window=1`, { localAddress: from });
    ws.on('error', () => undefined);
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`refused ${res.statusCode}`)));
    ws.once('close', () => reject(new Error('closed')));
  });
}

const portOf = (url: string): number => Number(new URL(url).port);

describe('connection caps (issue 11: defect 4)', () => {
  let stack: TestStack;
  let port: number;

  beforeAll(async () => {
    stack = await startStack({ maxConnections: 6, maxConnectionsPerClient: 3 });
    port = portOf(stack.url);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it('refuses the 4th socket of one client with 503 ADAGG_E_TOO_MANY_CONNECTIONS while another client is served; caps the total; frees slots on close', async () => {
    // Three idle raw sockets (no request at all) and the client is at its cap.
    const idle = await Promise.all([1, 2, 3].map(() => idleSocket(port, '127.0.0.4')));
    const refused = await raw(port, { from: '127.0.0.4', chunks: ['GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n'], timeoutMs: 10_000 });
    expect(refused.data).toMatch(/^HTTP\/1\.1 503 /);
    expect(JSON.parse(refused.data.slice(refused.data.indexOf('\r\n\r\n') + 4))).toMatchObject({ code: ErrorCode.TooManyConnections });
    // A WebSocket upgrade over the cap is refused the same way.
    await expect(openWs(port, '127.0.0.4')).rejects.toThrow('refused 503');
    // Another client is served meanwhile.
    expect(await get(port, '/healthz', '127.0.0.5')).toMatchObject({ status: 200 });

    // Three WebSockets from a second client: 6 open in all, the total cap; a third client is refused.
    const sockets = await Promise.all([1, 2, 3].map(() => openWs(port, '127.0.0.6')));
    const third = await get(port, '/healthz', '127.0.0.7');
    expect(third.status).toBe(503);
    expect(third.body).toMatchObject({ code: ErrorCode.TooManyConnections, error: expect.stringContaining('ADAGG_MAX_CONNECTIONS') });

    // Closing them frees every slot.
    for (const s of idle) s.destroy();
    for (const ws of sockets) ws.terminate();
    await waitFor('a new client served again', async () => (await get(port, '/healthz', '127.0.0.7')).status === 200, { everyMs: 100 });
  });

  it('keeps the counts exact through churn: after 200 short connections and refusals every slot opens again, and not one more', async () => {
    const from = ['127.0.0.8', '127.0.0.9', '127.0.0.10'];
    for (let round = 0; round < 10; round++) {
      // 20 at once from 3 addresses: some are refused, all are closed.
      const results = await Promise.all(Array.from({ length: 20 }, (_, i) => get(port, '/healthz', from[i % 3]!).catch(() => ({ status: 0, body: undefined }))));
      expect(results.every((r) => r.status === 200 || r.status === 503)).toBe(true);
      const ws = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => openWs(port, from[i % 3]!)));
      for (const r of ws) if (r.status === 'fulfilled') r.value.terminate();
    }
    await waitFor('every slot free', async () => (await get(port, '/healthz', '127.0.0.11')).status === 200, { everyMs: 100 });
    const open: WebSocket[] = [];
    await waitFor(
      'all 6 slots taken by WebSockets, 2 per client',
      async () => {
        try {
          while (open.length < 6) open.push(await openWs(port, from[open.length % 3]!));
          return true;
        } catch {
          return false;
        }
      },
      { everyMs: 100 },
    );
    expect((await get(port, '/healthz', '127.0.0.11')).status).toBe(503);
    for (const ws of open) ws.terminate();
  });

  it('a 16 MiB POST arrives within the default request timeout', async () => {
    await waitFor('the earlier sockets closed', async () => (await get(port, '/healthz', '127.0.0.1')).status === 200, { everyMs: 100 });
    const body = Buffer.alloc(16 * 1024 * 1024 - 1, '\n');
    const started = Date.now();
    const res = await fetch(`${stack.url}/v1/clicks`, { method: 'POST', headers: { 'content-type': 'application/x-ndjson' }, body });
    const ms = Date.now() - started;
    console.log(`defect 4: a 16 MiB POST took ${ms} ms on loopback (status ${res.status}: ${await res.text()})`);
    expect(res.status).not.toBe(408);
    expect(res.status).toBeLessThan(500);
  });
});

describe('connection timeouts (issue 11: defect 4)', () => {
  let stack: TestStack;
  let port: number;
  const HEADERS_MS = 1000;
  const REQUEST_MS = 2000;
  const KEEP_ALIVE_MS = 1000;
  const HEARTBEAT_MS = 500;

  beforeAll(async () => {
    stack = await startStack({ headersTimeoutMs: HEADERS_MS, requestTimeoutMs: REQUEST_MS, keepAliveTimeoutMs: KEEP_ALIVE_MS, wsHeartbeatMs: HEARTBEAT_MS });
    port = portOf(stack.url);
  });
  afterAll(async () => {
    await stack?.close();
  });

  const timeoutBody = (data: string): unknown => JSON.parse(data.slice(data.indexOf('\r\n\r\n') + 4));

  it('cuts a socket that sends nothing, and one dribbling its headers, at the headers timeout with 408 ADAGG_E_REQUEST_TIMEOUT', async () => {
    const [silent, dribble] = await Promise.all([
      raw(port),
      raw(port, { chunks: ['GET /healthz HTTP/1.1\r\n', ...Array.from({ length: 200 }, (_, i) => `X-Slow-${i}: y\r\n`)], everyMs: 100 }),
    ]);
    console.log(`defect 4: silent socket closed after ${silent.ms} ms, dribbled headers after ${dribble.ms} ms (headers timeout ${HEADERS_MS} ms)`);
    for (const r of [silent, dribble]) {
      expect(r.ms).toBeGreaterThanOrEqual(HEADERS_MS - 100);
      expect(r.ms).toBeLessThan(HEADERS_MS + HEADROOM_MS);
    }
    expect(dribble.data).toMatch(/^HTTP\/1\.1 408 /);
    expect(timeoutBody(dribble.data)).toMatchObject({ code: ErrorCode.RequestTimeout });
  });

  it('cuts a slow body at the request timeout, answering 408 ADAGG_E_REQUEST_TIMEOUT', async () => {
    const head = 'POST /v1/clicks HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n';
    const r = await raw(port, { chunks: [head, ...Array.from({ length: 1000 }, () => '{')], everyMs: 50 });
    console.log(`defect 4: slow body cut after ${r.ms} ms (request timeout ${REQUEST_MS} ms); answer: ${JSON.stringify(r.data.split('\r\n')[0])}`);
    expect(r.ms).toBeGreaterThanOrEqual(REQUEST_MS - 100);
    expect(r.ms).toBeLessThan(REQUEST_MS + HEADROOM_MS);
    expect(r.data).toMatch(/^HTTP\/1\.1 408 /);
    expect(timeoutBody(r.data)).toMatchObject({ code: ErrorCode.RequestTimeout });
  });

  it('closes an idle keep-alive socket after the keep-alive timeout', async () => {
    const r = await raw(port, { chunks: ['GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n'] });
    expect(r.data).toMatch(/^HTTP\/1\.1 200 /);
    console.log(`defect 4: idle keep-alive socket closed after ${r.ms} ms (keep-alive timeout ${KEEP_ALIVE_MS} ms)`);
    expect(r.ms).toBeLessThan(KEEP_ALIVE_MS + HEADROOM_MS);
  });

  it('closes a WebSocket peer that answers no ping; a live one stays open past every HTTP timeout', async () => {
    const live = await openWs(port, '127.0.0.1');
    let liveClosed = false;
    live.on('close', () => (liveClosed = true));
    // A hand-made upgrade that never answers the server's pings (a vanished peer).
    const upgrade =
      'GET /v1/ws/popular_ads?window=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
    const dead = await raw(port, { chunks: [upgrade], timeoutMs: 30_000 });
    expect(dead.data).toMatch(/^HTTP\/1\.1 101 /);
    console.log(`defect 4: a WebSocket peer that never answers pings closed after ${dead.ms} ms (heartbeat ${HEARTBEAT_MS} ms)`);
    expect(dead.ms).toBeLessThan(2 * HEARTBEAT_MS + HEADROOM_MS);
    // The live socket outlives the request timeout and still answers.
    const since = Date.now();
    await waitFor('past the request timeout', () => Date.now() - since > REQUEST_MS + 500, { everyMs: 100 });
    expect(liveClosed).toBe(false);
    const pong = new Promise<string>((res) => live.on('message', (d) => String(d).includes('pong') && res(String(d))));
    live.send('{"type":"ping"}');
    expect(await pong).toBe('{"type":"pong"}');
    live.terminate();
  });
});
