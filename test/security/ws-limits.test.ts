/**
 * Issue 11, defects 1–3 (and the WebSocket half of 8): hostile WebSocket clients against a real
 * in-process stack (runtime node + gateway on per-test nats-server and redis-server).
 *
 * 1. Frames that are not subscribe/ping objects (null, numbers, arrays, broken JSON, binary, huge)
 *    cost an error frame or that socket, never the process.
 * 2. Ranking specs are capped per socket and per gateway: 20,000 subscribe frames over one socket
 *    register no more than ADAGG_WS_MAX_SUBSCRIPTIONS specs in the shards, memory stays bounded and
 *    no actor restarts.
 * 3. A client that never reads but keeps sending pings (JSON and protocol pings) and bad frames is
 *    closed within the slow-client timeout, with the server's memory bounded.
 * 8. A filter given as an array, or a 5,000-character country, is refused with an error frame and
 *    the subscription in force keeps delivering.
 */
import type { Socket } from 'node:net';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { ErrorCode } from '../../src/errors.ts';
import type { RankingState } from '../../src/model/rankings.ts';
import { ShardClient } from '../../src/runtime/shard-client.ts';
import { topology } from '../../src/runtime/topology.ts';
import { getJson, postClicks, startStack, type TestStack } from '../helpers/stack.ts';
import { waitFor } from '../helpers/wait.ts';
import { FeedClient, feedUrl } from '../helpers/ws-client.ts';

/** A feed client that waits for its first `subscribed` frame on open. */
class Client extends FeedClient {
  async open(): Promise<this> {
    await this.opened();
    await waitFor('subscribed', () => this.frames.some((f) => f.type === 'subscribed'), { everyMs: 20 });
    return this;
  }
}

const MB = 1024 * 1024;
/** Specs every shard holds from the start (unfiltered windows 1, 5 and 60). */
const DEFAULT_SPECS = new Set(['1//', '5//', '60//']);

describe('WebSocket bounds (issue 11: defects 1, 2, 3, 8)', () => {
  let stack: TestStack;
  let nc: NatsConnection;
  let restarts = 0;
  const PER_SOCKET = 10;
  const TOTAL = 40;

  beforeAll(async () => {
    stack = await startStack({
      wsMaxSubscriptions: PER_SOCKET,
      wsMaxSpecsTotal: TOTAL,
      wsMaxBufferedBytes: 64 * 1024,
      wsSlowClientTimeoutMs: 2000,
    });
    stack.gateway.events.on('restart', () => restarts++);
    nc = await connect({ servers: stack.servers.natsUrl });
  });
  afterAll(async () => {
    await nc?.close();
    await stack?.close();
  });

  /** Ranking specs (other than the defaults) held by any shard, asked of the shards themselves. */
  async function shardSpecs(): Promise<Set<string>> {
    const client = new ShardClient(nc, topology(stack.opts.prefix), 5000, 3);
    const keys = new Set<string>();
    for (let shard = 0; shard < stack.opts.shards; shard++) {
      const state = await client.ask<RankingState>(shard, { op: 'rank-state' });
      for (const e of [...state.finals, ...state.provs]) if (!DEFAULT_SPECS.has(e.spec)) keys.add(e.spec);
    }
    return keys;
  }

  async function stillServing(): Promise<void> {
    expect((await getJson(`${stack.url}/healthz`)).status).toBe(200);
    const c = await new Client(feedUrl(stack.url, 'window=5')).open();
    c.send({ type: 'ping' });
    await waitFor('pong', () => c.of('pong').length === 1, { everyMs: 20 });
    c.close();
  }

  it('defect 1: null, numbers, arrays, broken JSON, binary and huge frames get an error frame or close that socket; the gateway keeps serving', async () => {
    const c = await new Client(feedUrl(stack.url)).open();
    const bad = ['null', '1', '"x"', '[]', 'true', '{', '', '{"type":null}', '{"type":"subscribe","count":{}}', '{"type":"subscribe","filter":[]}', '[{"type":"ping"}]'];
    for (const f of bad) c.send(f);
    c.ws.send(Buffer.from('{"type":"ping"}'), { binary: true });
    await waitFor('an error frame per bad frame', () => c.of('error').length === bad.length + 1, { everyMs: 20, detail: () => c.frames });
    expect(c.of('error').every((f) => f.code === ErrorCode.BadParam)).toBe(true);
    // The socket survived all of them.
    c.send({ type: 'ping' });
    await waitFor('pong', () => c.of('pong').length === 1, { everyMs: 20 });
    // A frame over the 64 KiB limit closes that socket (1009), nothing more.
    c.send(JSON.stringify({ type: 'subscribe', filter: { country: 'X'.repeat(200_000) } }));
    await waitFor('the huge frame closed the socket', () => c.closedWith !== undefined, { everyMs: 20 });
    expect(c.closedWith).toBe(1009);
    await stillServing();
  });

  it('defect 8 (WebSocket half): an array filter or a 5,000-character country is refused and the subscription in force keeps delivering', async () => {
    const c = await new Client(feedUrl(stack.url, 'window=1&country=us')).open();
    const before = c.of('error').length;
    c.send({ type: 'subscribe', window: 2, filter: ['US'] });
    c.send({ type: 'subscribe', window: 2, filter: [['country', 'DE']] });
    c.send({ type: 'subscribe', window: 2, filter: { country: 'X'.repeat(5000) } });
    c.send({ type: 'subscribe', window: 2, filter: { country: ['DE'] } });
    await waitFor('four error frames', () => c.of('error').length === before + 4, { everyMs: 20, detail: () => c.frames });
    expect(c.of('error').slice(before).map((f) => f.code)).toEqual(Array(4).fill(ErrorCode.BadParam));
    expect(c.of('subscribed')).toHaveLength(1);
    // The US subscription still delivers: a US click shows up in its ranking.
    const now = Date.now();
    const res = await postClicks(stack.url, [JSON.stringify({ click_id: `arr-${now}`, ad_id: 'ad-array-filter', ts: now, country: 'US' })]);
    expect(res.status).toBe(200);
    await waitFor('a US ranking with the new click', () => c.of('ranking').some((f) => f.filter?.country === 'US' && f.ads?.some((a) => a.ad_id === 'ad-array-filter')), {
      timeoutMs: 30_000,
      everyMs: 50,
      detail: () => c.frames.slice(-3),
    });
    expect(c.of('ranking').every((f) => f.window === 1 && f.filter?.country === 'US')).toBe(true);
    c.close();
  });

  it('defect 2: 20,000 subscribe frames over one socket register at most ADAGG_WS_MAX_SUBSCRIPTIONS specs; memory stays bounded; no actor restarts', async () => {
    const held = (await shardSpecs()).size; // left by earlier tests, still leased
    const c = await new Client(feedUrl(stack.url, 'window=1')).open();
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peakRss = rss0;
    const N = 20_000;
    for (let i = 0; i < N; i++) {
      // Distinct, valid filters (a fresh spec each), plus some that REST would refuse.
      const country = i % 1000 === 999 ? 'Y'.repeat(5000) : `Q${i}`;
      c.send({ type: 'subscribe', count: 10, window: 1 + (i % 60), filter: { country } });
      if (i % 1000 === 999) {
        peakRss = Math.max(peakRss, process.memoryUsage().rss);
        await new Promise((r) => setImmediate(r));
      }
    }
    await waitFor('an answer to every frame', () => c.of('subscribed').length + c.of('error').length === N + 1, {
      timeoutMs: 60_000,
      everyMs: 100,
      detail: () => ({ subscribed: c.of('subscribed').length, errors: c.of('error').length }),
    });
    peakRss = Math.max(peakRss, process.memoryUsage().rss);
    // The connect spec (1//, a default) plus 9 new ones: 10 held by this socket.
    expect(c.of('subscribed')).toHaveLength(PER_SOCKET);
    const codes = new Map<string, number>();
    for (const f of c.of('error')) codes.set(f.code!, (codes.get(f.code!) ?? 0) + 1);
    expect(codes.get(ErrorCode.BadParam)).toBe(N / 1000);
    expect(codes.get(ErrorCode.TooManySubscriptions)).toBe(N - N / 1000 - (PER_SOCKET - 1));
    // The shards hold exactly 9 specs more (the 10th is the default 1//).
    await waitFor('the shards report the specs registered', async () => (await shardSpecs()).size >= held + PER_SOCKET - 1, { timeoutMs: 30_000, everyMs: 500 });
    expect((await shardSpecs()).size).toBe(held + PER_SOCKET - 1);
    const growthMb = (peakRss - rss0) / MB;
    console.log(`defect 2: ${N} subscribe frames: RSS ${Math.round(rss0 / MB)} MB -> peak ${Math.round(peakRss / MB)} MB (+${growthMb.toFixed(1)} MB), heap ${Math.round(process.memoryUsage().heapUsed / MB)} MB`);
    expect(growthMb).toBeLessThan(200);
    expect(restarts).toBe(0);
    c.close();
    await stillServing();
  });

  it('defect 2: specs are capped across the gateway (ADAGG_WS_MAX_SPECS_TOTAL); a spec already held stays open to every socket', async () => {
    const held = (await shardSpecs()).size; // left by earlier tests, still leased
    const sockets = await Promise.all(Array.from({ length: 6 }, () => new Client(feedUrl(stack.url, 'window=5')).open()));
    for (const [s, c] of sockets.entries()) {
      for (let i = 0; i < PER_SOCKET - 1; i++) c.send({ type: 'subscribe', window: 2, filter: { country: `T${s}x${i}` } });
    }
    const answered = (): number => sockets.reduce((n, c) => n + c.of('subscribed').length + c.of('error').length, 0);
    await waitFor('every subscribe answered', () => answered() === sockets.length * PER_SOCKET, { everyMs: 50 });
    const accepted = sockets.reduce((n, c) => n + c.of('subscribed').length - 1, 0);
    const refused = sockets.flatMap((c) => c.of('error'));
    expect(refused.every((f) => f.code === ErrorCode.TooManySubscriptions)).toBe(true);
    // The gateway registered new specs up to its cap; 5// is a default and never counted by the shards.
    expect(held + accepted).toBeLessThanOrEqual(TOTAL);
    expect(refused.length).toBeGreaterThan(0);
    await waitFor('the shards report the new specs', async () => (await shardSpecs()).size >= held + accepted, { timeoutMs: 30_000, everyMs: 500 });
    expect((await shardSpecs()).size).toBeLessThanOrEqual(TOTAL);
    // At the cap, a spec someone already holds is still open to anyone.
    const shared = sockets.find((c) => c.of('subscribed').length > 1)!.of('subscribed').at(-1)!;
    const late = await new Client(feedUrl(stack.url, `window=${shared.window}&country=${shared.filter!.country}`)).open();
    expect(late.of('subscribed')).toHaveLength(1);
    expect(late.of('error')).toHaveLength(0);
    for (const c of [...sockets, late]) c.close();
  });

  it('defect 3: a client that never reads but keeps sending pings and bad frames is closed within the slow-client timeout; memory stays bounded', async () => {
    const c = await new Client(feedUrl(stack.url, 'window=1')).open();
    // Only control frames must back the socket up: no ranking may come while it does (a ranking
    // waiting on a backed-up socket was the one case the old code handled). Rankings come on
    // subscribing and around each minute close, so start well clear of both.
    await waitFor('the first ranking', () => c.of('ranking').length > 0, { everyMs: 50 });
    await waitFor('a quiet part of the minute', () => Date.now() % 60_000 > 10_000 && Date.now() % 60_000 < 30_000, { timeoutMs: 70_000, everyMs: 100 });
    let slowClosed = 0;
    const onWs = (e: { kind: string }): void => {
      if (e.kind === 'slow_disconnect') slowClosed++;
    };
    stack.gateway.events.on('ws', onWs);
    // Stop reading: the server's answers pile up in the kernel buffers, then in its own.
    const raw = (c.ws as unknown as { _socket: Socket })._socket;
    raw.pause();
    global.gc?.();
    const rss0 = process.memoryUsage().rss;
    let peakRss = rss0;
    const started = Date.now();
    const payload = Buffer.alloc(125, 'p'); // the largest control-frame payload: its pong echoes it
    let sentFrames = 0;
    while (slowClosed === 0 && c.closedWith === undefined && Date.now() - started < 25_000) {
      if (c.ws.readyState !== WebSocket.OPEN) break;
      // Keep our own send buffer small: the server must be reading for pongs to pile up.
      if (c.ws.bufferedAmount < MB) {
        for (let i = 0; i < 500; i++) {
          c.ws.ping(payload);
          c.send('{"type":"ping"}');
          c.send('null');
          sentFrames += 3;
        }
      }
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
      await new Promise((r) => setTimeout(r, 5));
    }
    const tookMs = Date.now() - started;
    stack.gateway.events.off('ws', onWs);
    const growthMb = (peakRss - rss0) / MB;
    console.log(`defect 3: ${sentFrames} frames sent by a non-reading client; closed by the server after ${tookMs} ms; RSS ${Math.round(rss0 / MB)} MB -> peak ${Math.round(peakRss / MB)} MB (+${growthMb.toFixed(1)} MB)`);
    expect(slowClosed).toBe(1);
    expect(tookMs).toBeLessThan(25_000);
    expect(growthMb).toBeLessThan(200);
    // Reading again, the client finds the socket closed: 1013 if the close frame got through,
    // 1006 if it was cut after the grace second.
    raw.resume();
    await waitFor('the client sees the close', () => c.closedWith !== undefined, { timeoutMs: 30_000, everyMs: 50 });
    expect([1006, 1013]).toContain(c.closedWith);
    expect(restarts).toBe(0);
    await stillServing();
  });
});
