import type { WebSocket } from 'ws';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors.ts';
import { WsFeeds, type RankingSource, type WsFeedOptions } from '../../src/gateway/ws-feeds.ts';
import type { RankingFrame, ServerFrame } from '../../src/gateway/ws-protocol.ts';
import { specKey, type RankSpec } from '../../src/model/rank-spec.ts';
import type { GlobalRanking } from '../../src/model/rankings.ts';
import { createTopNReducer } from '../../src/actors/index.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { TopNReducerHost } from '../../src/runtime/topn-reducer-host.ts';
import { topology } from '../../src/runtime/topology.ts';
import type { NatsConnection } from '@nats-io/transport-node';
import { RuntimeEvents } from '../../src/runtime/events.ts';
import { silentLogger } from '../../src/runtime/logger.ts';

/**
 * The live feeds on a simulated clock with in-memory sockets: subscriptions share the reducer's
 * computation, a backed-up socket gets only the newest ranking and is dropped once slow for longer
 * than the timeout. No sleeps: time moves with ManualClock.advance.
 */

const T0 = Date.UTC(2026, 10, 22, 4, 10);
const OPTS: WsFeedOptions = {
  dimensions: ['country'],
  cubes: [],
  topnDepth: 100,
  maxLiveWindow: 60,
  wsMaxBufferedBytes: 1000,
  wsSlowClientTimeoutMs: 2000,
  wsMaxSubscriptions: 3,
  wsHeartbeatMs: 5000,
  specLeaseMs: 60_000,
};

/** A socket the test fills and drains by hand. */
class FakeSocket {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  sent: ServerFrame[] = [];
  closedWith: number | undefined;
  terminated = false;
  private handlers = new Map<string, Array<(...args: unknown[]) => void>>();
  send(text: string): void {
    this.sent.push(JSON.parse(text) as ServerFrame);
  }
  close(code: number): void {
    this.closedWith = code;
    this.readyState = 3;
    this.emit('close');
  }
  terminate(): void {
    this.terminated = true;
    this.readyState = 3;
    this.emit('close');
  }
  pings = 0;
  /** Answers pings like a live peer; false: a dead one. */
  answersPings = true;
  pongs: Buffer[] = [];
  ping(): void {
    this.pings++;
    if (this.answersPings) queueMicrotask(() => this.emit('pong'));
  }
  pong(data: Buffer): void {
    this.pongs.push(data);
  }
  on(event: string, fn: (...args: unknown[]) => void): this {
    this.handlers.set(event, [...(this.handlers.get(event) ?? []), fn]);
    return this;
  }
  emit(event: string, ...args: unknown[]): void {
    for (const fn of this.handlers.get(event) ?? []) fn(...args);
  }
  rankings(): RankingFrame[] {
    return this.sent.filter((f): f is RankingFrame => f.type === 'ranking');
  }
}

/** The reducer host's side: counts watchers per spec and lets the test publish rankings. */
class FakeRankings implements RankingSource {
  watchers = new Map<string, number>();
  private listeners = new Set<(r: GlobalRanking) => void>();
  latest = new Map<string, { final?: GlobalRanking; prov?: GlobalRanking }>();
  onRanking(fn: (r: GlobalRanking) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
  watch(spec: RankSpec): string {
    const key = specKey(spec);
    this.watchers.set(key, (this.watchers.get(key) ?? 0) + 1);
    return key;
  }
  unwatch(key: string): void {
    const n = (this.watchers.get(key) ?? 0) - 1;
    if (n > 0) this.watchers.set(key, n);
    else this.watchers.delete(key);
  }
  current(key: string): { final?: GlobalRanking; prov?: GlobalRanking } {
    return this.latest.get(key) ?? {};
  }
  publish(r: GlobalRanking): void {
    for (const fn of this.listeners) fn(r);
  }
}

function setup(): { feeds: WsFeeds; rankings: FakeRankings; clock: ManualClock; events: Array<string> } {
  const rankings = new FakeRankings();
  const clock = new ManualClock(T0);
  const bus = new RuntimeEvents();
  const events: string[] = [];
  bus.on('ws', (e) => events.push(e.kind));
  return { feeds: new WsFeeds(OPTS, { rankings, events: bus, log: silentLogger, clock }), rankings, clock, events };
}

const MINUTE = T0 / 60_000;
const ranking = (spec: string, final: boolean, ads: Array<[string, number]>, end = MINUTE + 1): GlobalRanking => ({
  spec,
  final,
  end,
  list: ads.map(([ad_id, count]) => ({ ad_id, count })),
});

describe('WsFeeds', () => {
  it('subscribes from the query, sends the current ranking, then each new one cut to count; stamps frames with the clock', () => {
    const { feeds, rankings, clock } = setup();
    const key = specKey({ window: 5, dim: 'country', value: 'DE' });
    rankings.latest.set(key, { final: ranking(key, true, [['a', 3]], MINUTE) });
    const ws = new FakeSocket();
    feeds.connect(ws as unknown as WebSocket, { count: '2', window: '5', country: 'de' });
    expect(ws.sent[0]).toEqual({ type: 'subscribed', count: 2, window: 5, filter: { country: 'DE' } });
    expect(rankings.watchers.get(key)).toBe(1);
    expect(ws.rankings()).toHaveLength(1);
    expect(ws.rankings()[0]).toMatchObject({ final: true, ads: [{ ad_id: 'a', count: 3 }], at: new Date(T0).toISOString() });

    clock.advance(1500);
    rankings.publish(ranking(key, false, [['b', 9], ['a', 4], ['c', 1]]));
    rankings.publish(ranking('1//', false, [['z', 99]])); // another spec: not for this client
    const last = ws.rankings().at(-1)!;
    expect(last).toEqual({
      type: 'ranking',
      count: 2,
      window: 5,
      filter: { country: 'DE' },
      final: false,
      from: new Date((MINUTE + 1 - 5) * 60_000).toISOString(),
      to: new Date((MINUTE + 1) * 60_000).toISOString(),
      ads: [{ ad_id: 'b', count: 9 }, { ad_id: 'a', count: 4 }],
      at: new Date(T0 + 1500).toISOString(),
    });
    expect(ws.rankings()).toHaveLength(2);
    feeds.close();
  });

  it('refuses bad connect parameters with an error frame and close 1008; a bad subscribe keeps the old subscription', () => {
    const { feeds, rankings } = setup();
    const bad = new FakeSocket();
    feeds.connect(bad as unknown as WebSocket, { count: '10', window: '61' });
    expect(bad.sent).toEqual([{ type: 'error', code: ErrorCode.BadParam, error: expect.stringContaining('window') }]);
    expect(bad.closedWith).toBe(1008);
    const notAgg = new FakeSocket();
    feeds.connect(notAgg as unknown as WebSocket, { user_id: 'u1' });
    expect(notAgg.sent[0]).toMatchObject({ type: 'error', code: ErrorCode.FilterNotPreaggregated });

    const ws = new FakeSocket();
    feeds.connect(ws as unknown as WebSocket, { count: '3', window: '1' });
    ws.emit('message', JSON.stringify({ type: 'subscribe', count: 3, window: 2, filter: { device: 'ios' } }));
    expect(ws.sent.at(-1)).toMatchObject({ type: 'error', code: ErrorCode.FilterNotPreaggregated });
    ws.emit('message', 'not json');
    expect(ws.sent.at(-1)).toMatchObject({ type: 'error', code: ErrorCode.BadParam });
    ws.emit('message', JSON.stringify({ type: 'ping' }));
    expect(ws.sent.at(-1)).toEqual({ type: 'pong' });
    // JSON that is not an object (a `null` frame once took the whole process down).
    for (const frame of ['null', '42', '"subscribe"', '[{"type":"ping"}]', 'true']) {
      ws.emit('message', frame);
      expect(ws.sent.at(-1)).toEqual({ type: 'error', code: ErrorCode.BadParam, error: 'frame is not a JSON object' });
    }
    expect([...rankings.watchers]).toEqual([['1//', 1]]);

    // A good subscribe moves the watch; closing the socket releases it.
    ws.emit('message', JSON.stringify({ type: 'subscribe', count: 1, window: 3, filter: null }));
    expect(ws.sent.at(-1)).toEqual({ type: 'subscribed', count: 1, window: 3, filter: null });
    expect([...rankings.watchers]).toEqual([['3//', 1]]);
    ws.emit('close');
    expect(rankings.watchers.size).toBe(0);
    feeds.close();
  });

  it('a backed-up socket keeps only the newest ranking, gets it once drained, and is dropped when slow too long', () => {
    const { feeds, rankings, clock, events } = setup();
    const key = specKey({ window: 1, dim: null, value: null });
    const slow = new FakeSocket();
    const fast = new FakeSocket();
    feeds.connect(slow as unknown as WebSocket, { window: '1' });
    feeds.connect(fast as unknown as WebSocket, { window: '1' });

    slow.bufferedAmount = 5000;
    for (let i = 1; i <= 3; i++) rankings.publish(ranking(key, false, [['a', i]]));
    expect(slow.rankings()).toHaveLength(0);
    expect(fast.rankings().map((f) => f.ads[0]!.count)).toEqual([1, 2, 3]);
    expect(events.filter((e) => e === 'coalesced')).toHaveLength(2);

    // Drained: the sweep sends only the newest.
    slow.bufferedAmount = 0;
    clock.advance(100);
    expect(slow.rankings().map((f) => f.ads[0]!.count)).toEqual([3]);

    // Backed up again, and for longer than the slow-client timeout: closed with 1013.
    slow.bufferedAmount = 5000;
    rankings.publish(ranking(key, false, [['a', 4]]));
    clock.advance(OPTS.wsSlowClientTimeoutMs);
    expect(slow.closedWith).toBeUndefined();
    clock.advance(200);
    expect(slow.closedWith).toBe(1013);
    expect(events).toContain('slow_disconnect');
    expect(fast.terminated).toBe(false);
    expect(fast.closedWith).toBeUndefined();
    expect(rankings.watchers.get(key)).toBe(1);

    feeds.close();
    expect(fast.terminated).toBe(true);
    rankings.publish(ranking(key, false, [['a', 5]]));
    expect(fast.rankings().at(-1)!.ads[0]!.count).toBe(4);
  });

  it('writes no frame of any kind to a backed-up socket, and closes one that keeps pinging while it never reads', () => {
    const { feeds, clock } = setup();
    const ws = new FakeSocket();
    feeds.connect(ws as unknown as WebSocket, { window: '1' });
    const before = ws.sent.length;
    ws.bufferedAmount = 5000;
    for (let i = 0; i < 100; i++) {
      ws.emit('message', JSON.stringify({ type: 'ping' }));
      ws.emit('message', 'null');
      ws.emit('message', JSON.stringify({ type: 'subscribe', window: 2 }));
      ws.emit('ping', Buffer.from('x'));
      clock.advance(25);
    }
    expect(ws.sent.length).toBe(before);
    expect(ws.pongs).toHaveLength(0);
    expect(ws.closedWith).toBe(1013);

    // Under the limit, protocol pings are answered.
    const ok = new FakeSocket();
    feeds.connect(ok as unknown as WebSocket, { window: '1' });
    ok.emit('ping', Buffer.from('hi'));
    expect(ok.pongs.map(String)).toEqual(['hi']);
    feeds.close();
  });

  it('closes a socket that answers no heartbeat ping, keeps one that does', async () => {
    const { feeds, clock } = setup();
    const dead = new FakeSocket();
    dead.answersPings = false;
    const alive = new FakeSocket();
    feeds.connect(dead as unknown as WebSocket, {});
    feeds.connect(alive as unknown as WebSocket, {});
    clock.advance(OPTS.wsHeartbeatMs!);
    expect([dead.pings, alive.pings]).toEqual([1, 1]);
    await Promise.resolve(); // the live peer's pong
    clock.advance(OPTS.wsHeartbeatMs!);
    expect(dead.terminated).toBe(true);
    expect(alive.terminated).toBe(false);
    expect(alive.pings).toBe(2);
    feeds.close();
  });

  it('caps the distinct specs one socket holds within a lease; a refused or malformed subscribe keeps the old subscription', async () => {
    const { feeds, rankings, clock } = setup();
    const ws = new FakeSocket();
    feeds.connect(ws as unknown as WebSocket, { window: '1' });
    const sub = (frame: unknown): ServerFrame => {
      ws.emit('message', JSON.stringify(frame));
      return ws.sent.at(-1)!;
    };
    expect(sub({ type: 'subscribe', window: 2 })).toMatchObject({ type: 'subscribed', window: 2 });
    expect(sub({ type: 'subscribe', window: 3 })).toMatchObject({ type: 'subscribed', window: 3 });
    // A fourth distinct spec within the lease: refused, nothing watched, the subscription stays.
    for (let i = 0; i < 1000; i++) {
      expect(sub({ type: 'subscribe', window: 4, filter: { country: `C${i}` } })).toMatchObject({ type: 'error', code: ErrorCode.TooManySubscriptions });
    }
    expect([...rankings.watchers]).toEqual([['3//', 1]]);
    // Specs it holds can be taken again at once.
    expect(sub({ type: 'subscribe', window: 1 })).toMatchObject({ type: 'subscribed', window: 1 });
    // Filters are checked like REST parameters; a filter that is not an object of strings is refused.
    const bad = [{ filter: ['US'] }, { filter: [] }, { filter: 'US' }, { filter: { country: 'X'.repeat(5000) } }, { filter: { country: ['US'] } }, { filter: { country: 1 } }];
    for (const b of bad) expect(sub({ type: 'subscribe', window: 2, ...b })).toMatchObject({ type: 'error', code: ErrorCode.BadParam });
    // A filter named __proto__ is refused, never dropped into an unfiltered subscription (defect 8).
    ws.emit('message', '{"type":"subscribe","window":2,"filter":{"__proto__":"US"}}');
    expect(ws.sent.at(-1)).toMatchObject({ type: 'error' });
    expect([...rankings.watchers]).toEqual([['1//', 1]]);
    ws.emit('message', Buffer.from('{"type":"ping"}'), true);
    expect(ws.sent.at(-1)).toMatchObject({ type: 'error', code: ErrorCode.BadParam, error: expect.stringContaining('binary') });
    // Once the lease of the specs it left has run out, new ones are accepted.
    for (let t = 0; t <= OPTS.specLeaseMs!; t += 1000) {
      clock.advance(1000);
      await Promise.resolve(); // pongs to the heartbeat
    }
    expect(sub({ type: 'subscribe', window: 4, filter: { country: 'de' } })).toEqual({ type: 'subscribed', count: 10, window: 4, filter: { country: 'DE' } });
    feeds.close();
  });
});

describe('TopNReducerHost spec cap', () => {
  it('refuses a new spec beyond maxSpecs (watched or still leased), shares held ones, frees lapsed ones', async () => {
    const nc = { subscribe: () => ({ unsubscribe: () => undefined }), request: () => Promise.reject(new Error('no server')) } as unknown as NatsConnection;
    const clock = new ManualClock(T0);
    const host = new TopNReducerHost(nc, topology('t'), { shards: 1, depth: 10, queryTimeoutMs: 10, specLeaseMs: 1000, maxSpecs: 2 }, createTopNReducer, clock, silentLogger);
    const spec = (w: number): RankSpec => ({ window: w, dim: null, value: null });
    const a = host.watch(spec(1));
    host.watch(spec(1)); // shared: no new spec
    const b = host.watch(spec(2));
    expect(host.heldSpecs).toBe(2);
    expect(() => host.watch(spec(3))).toThrow(expect.objectContaining({ code: ErrorCode.TooManySubscriptions }));
    host.unwatch(b);
    // Unwatched but still leased in the shards: still counts; watching it again is free.
    expect(() => host.watch(spec(3))).toThrow(expect.objectContaining({ code: ErrorCode.TooManySubscriptions }));
    host.unwatch(host.watch(spec(2)));
    clock.advance(1011);
    expect(host.heldSpecs).toBe(1);
    host.watch(spec(3));
    host.unwatch(a);
    host.unwatch(a);
    await host.close();
  });
});
