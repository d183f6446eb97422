import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { parseSpecKey, specKey, type RankSpec } from '../model/rank-spec.ts';
import type { GlobalRanking } from '../model/rankings.ts';
import { AdaggError, ErrorCode } from '../errors.ts';
import { isoOf, minuteStartMs } from '../model/time.ts';
import { systemClock, type Clock, type TimerHandle } from '../runtime/clock.ts';
import type { RuntimeEvents } from '../runtime/events.ts';
import type { Logger } from '../runtime/logger.ts';
import type { TopNReducerHost } from '../runtime/topn-reducer-host.ts';
import { errorResponses } from './openapi.ts';
import { filterFromRecord, filterToRecord, intParam, type Query } from './params.ts';
import { filterParams, wholeNumberParam } from './schemas.ts';
import type { ClientFrame, RankingFrame, ServerFrame } from './ws-protocol.ts';

export interface WsFeedOptions {
  dimensions: readonly string[];
  cubes: readonly string[];
  /** Largest `count` (the shards' top-K depth). */
  topnDepth: number;
  maxLiveWindow: number;
  /** Above this many unsent bytes a client is slow: it gets only the newest ranking. */
  wsMaxBufferedBytes: number;
  /** A client slow for this long is disconnected. */
  wsSlowClientTimeoutMs: number;
}

/** What the feeds need of the gateway's top-N reducer host. */
export type RankingSource = Pick<TopNReducerHost, 'onRanking' | 'watch' | 'unwatch' | 'current'>;

export interface WsFeedDeps {
  rankings: RankingSource;
  events: RuntimeEvents;
  log: Logger;
  /** @default systemClock */
  clock?: Clock | undefined;
}

/** How often coalesced rankings are flushed and slow clients checked. */
const SWEEP_INTERVAL_MS = 100;

function errorFrame(err: unknown): ServerFrame {
  const e = err instanceof AdaggError ? err : new AdaggError(ErrorCode.BadParam, String(err));
  return { type: 'error', code: e.code, error: e.message };
}

function filterOf(spec: RankSpec): Record<string, string> | null {
  return filterToRecord(spec.dim === null ? undefined : { dim: spec.dim, value: spec.value ?? '' });
}

/**
 * One WebSocket subscriber: its subscription and its coalescing state. A socket whose send buffer
 * is over the limit is never written more: it keeps only the newest ranking (`pending`), sent when
 * the buffer drains, and is closed if it stays backed up.
 */
export class WsFeedClient {
  /** The reducer spec key watched ('' before the first subscription). */
  private specKey = '';
  private rankCount = 10;
  /** The newest ranking not yet sent because the socket was backed up (coalescing). */
  private pending: string | undefined;
  private slowSince: number | undefined;

  constructor(
    private readonly ws: WebSocket,
    private readonly opts: Pick<WsFeedOptions, 'wsMaxBufferedBytes' | 'wsSlowClientTimeoutMs'>,
    private readonly events: RuntimeEvents,
  ) {}

  get spec(): string {
    return this.specKey;
  }

  get count(): number {
    return this.rankCount;
  }

  /** Unsent bytes on the socket. */
  get buffered(): number {
    return this.ws.bufferedAmount;
  }

  /** Takes a new subscription (the reducer's spec key); an unsent ranking of the old one is dropped. */
  subscribed(key: string, count: number): void {
    this.specKey = key;
    this.rankCount = count;
    this.pending = undefined;
  }

  /** Sends a control frame (subscribed, error, pong) at once. */
  send(frame: ServerFrame): void {
    this.ws.send(JSON.stringify(frame));
  }

  /** Sends a ranking, or keeps it as the only pending one while the socket is backed up. */
  deliver(text: string, now: number): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.ws.bufferedAmount > this.opts.wsMaxBufferedBytes) {
      if (this.pending !== undefined) this.events.emit('ws', { kind: 'coalesced' });
      this.pending = text; // coalesce: only the newest ranking waits
      this.slowSince ??= now;
      return;
    }
    this.pending = undefined;
    this.slowSince = undefined;
    this.ws.send(text);
    this.events.emit('ws', { kind: 'sent' });
  }

  /**
   * Sends the pending ranking if the socket drained; terminates a client backed up for longer than
   * the slow-client timeout (then returns true).
   */
  sweep(now: number): boolean {
    if (this.pending === undefined) return false;
    if (this.ws.bufferedAmount <= this.opts.wsMaxBufferedBytes) {
      this.deliver(this.pending, now);
      return false;
    }
    if (this.slowSince === undefined || now - this.slowSince <= this.opts.wsSlowClientTimeoutMs) return false;
    this.pending = undefined;
    this.ws.terminate();
    return true;
  }

  /** Refuses the connection: an error frame, then close 1008. */
  refuse(err: unknown): void {
    const frame = errorFrame(err);
    this.send(frame);
    this.ws.close(1008, frame.type === 'error' ? frame.code : undefined);
  }

  terminate(): void {
    this.ws.terminate();
  }
}

/**
 * `GET /v1/ws/popular_ads`: live top-N over WebSocket (protocol in ws-protocol.ts). Subscribers of
 * the same spec (window × filter) share one reducer computation; each gets the first `count`
 * entries. Time (frame stamps, slow-client timeouts, the sweep) comes from the injected clock.
 */
export class WsFeeds {
  private readonly clients = new Set<WsFeedClient>();
  private readonly clock: Clock;
  private readonly offRanking: () => void;
  private sweepTimer: TimerHandle | undefined;
  private closed = false;

  constructor(
    private readonly opts: WsFeedOptions,
    private readonly deps: WsFeedDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.offRanking = deps.rankings.onRanking((r) => this.onRanking(r));
    this.scheduleSweep();
  }

  /** Registers the WebSocket route on `app` and closes the feeds with it. */
  register(app: FastifyInstance): void {
    void app.register(websocket, { options: { maxPayload: 64 * 1024 } });
    void app.register(async (scoped) => {
      scoped.route<{ Querystring: Query }>({
        method: 'GET',
        url: '/v1/ws/popular_ads',
        // Bad parameters are answered on the socket (error frame, close 1008), not with HTTP 400.
        attachValidation: true,
        schema: this.schema(),
        // `wsHandler` rather than `websocket: true`: the route stays in /openapi.json, and a plain
        // GET gets a coded 404 instead of an empty one.
        wsHandler: (ws, req) => this.connect(ws, req.query, req.validationError),
        handler: async () => {
          throw new AdaggError(ErrorCode.NotFound, 'GET /v1/ws/popular_ads is a WebSocket endpoint: connect with an Upgrade: websocket request');
        },
      });
    });
    app.addHook('onClose', async () => this.close());
  }

  /** Stops the sweep and the ranking listener and drops every client. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer) this.clock.clearTimeout(this.sweepTimer);
    this.offRanking();
    for (const c of this.clients) c.terminate();
  }

  /** A new socket: subscribe it from its query parameters, or refuse it. */
  connect(ws: WebSocket, query: Query, invalid?: Error | undefined): void {
    const client = new WsFeedClient(ws, this.opts, this.deps.events);
    this.deps.events.emit('ws', { kind: 'connect' });
    try {
      if (invalid) throw invalid;
      const { count, window, ...rest } = query;
      const filter = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, k === 'country' ? String(v).toUpperCase() : String(v)]));
      const sub = this.parseSubscription(count, window, filter);
      this.clients.add(client);
      this.subscribe(client, sub.spec, sub.count);
    } catch (err) {
      client.refuse(err);
      ws.on('close', () => this.deps.events.emit('ws', { kind: 'disconnect' }));
      return;
    }
    ws.on('message', (data) => {
      // Last resort: whatever a frame holds, a fault in handling it costs this socket one error
      // frame, never the process (an exception thrown from a 'message' listener is uncaught).
      try {
        this.onFrame(client, String(data));
      } catch (err) {
        this.deps.log.error({ err }, 'WebSocket frame handling failed');
        client.send({ type: 'error', code: ErrorCode.Internal, error: 'the frame could not be handled' });
      }
    });
    ws.on('close', () => this.disconnect(client));
  }

  private schema(): Record<string, unknown> {
    const o = this.opts;
    return {
      summary: 'Live top-N rankings (WebSocket)',
      description:
        'All frames are JSON. The server sends subscribed, ranking (final at each minute close, provisional at most once a second), error {code, error} and pong; the client sends {"type":"subscribe","count":N,"window":M,"filter":{...}} and {"type":"ping"}. Errors are frames, not HTTP statuses: ADAGG_E_BAD_PARAM (a parameter is malformed or out of range) and ADAGG_E_FILTER_NOT_PREAGGREGATED (the filter is not a configured dimension or cube); bad connect parameters close the socket with 1008, a bad subscribe keeps the old subscription.',
      tags: ['live'],
      querystring: {
        type: 'object',
        properties: {
          count: wholeNumberParam('how many ads', 10, 1, o.topnDepth),
          window: wholeNumberParam('window length in minutes', 1, 1, o.maxLiveWindow),
          // Any string, as before schemas: the feed checks filters like its `subscribe` frames.
          ...filterParams(o.dimensions, o.cubes, { type: 'string' }),
        },
        additionalProperties: { type: 'string' },
      },
      response: { 101: { description: 'Switching Protocols: the WebSocket feed' }, ...errorResponses([ErrorCode.NotFound]) },
    };
  }

  private parseSubscription(count: unknown, window: unknown, filter: Record<string, string> | null | undefined): { spec: RankSpec; count: number } {
    const q: Query = { count: count === undefined ? undefined : String(count), window: window === undefined ? undefined : String(window) };
    const n = intParam(q, 'count', 10, 1, this.opts.topnDepth);
    const w = intParam(q, 'window', 1, 1, this.opts.maxLiveWindow);
    const f = filterFromRecord(filter ?? {}, this.opts.dimensions, this.opts.cubes);
    return { spec: { window: w, dim: f?.dim ?? null, value: f?.value ?? null }, count: n };
  }

  private subscribe(client: WsFeedClient, spec: RankSpec, count: number): void {
    const key = specKey(spec);
    if (client.spec) this.deps.rankings.unwatch(client.spec);
    client.subscribed(this.deps.rankings.watch(spec), count);
    client.send({ type: 'subscribed', count, window: spec.window, filter: filterOf(spec) });
    const cur = this.deps.rankings.current(key);
    const now = this.clock.now();
    if (cur.final) client.deliver(this.frameOf(cur.final, count), now);
    if (cur.prov && (!cur.final || cur.prov.end > cur.final.end)) client.deliver(this.frameOf(cur.prov, count), now);
  }

  private onFrame(client: WsFeedClient, data: string): void {
    let f: ClientFrame;
    try {
      f = JSON.parse(data) as ClientFrame;
    } catch {
      client.send({ type: 'error', code: ErrorCode.BadParam, error: 'frame is not JSON' });
      return;
    }
    // `null`, numbers, strings and arrays are valid JSON but not frames.
    if (typeof f !== 'object' || f === null || Array.isArray(f)) {
      client.send({ type: 'error', code: ErrorCode.BadParam, error: 'frame is not a JSON object' });
      return;
    }
    if (f.type === 'ping') return client.send({ type: 'pong' });
    if (f.type !== 'subscribe') return client.send({ type: 'error', code: ErrorCode.BadParam, error: 'unknown frame type' });
    try {
      const sub = this.parseSubscription(f.count, f.window, f.filter);
      this.subscribe(client, sub.spec, sub.count);
    } catch (err) {
      client.send(errorFrame(err));
    }
  }

  private disconnect(client: WsFeedClient): void {
    this.deps.events.emit('ws', { kind: 'disconnect' });
    this.clients.delete(client);
    if (client.spec) this.deps.rankings.unwatch(client.spec);
  }

  private onRanking(r: GlobalRanking): void {
    const now = this.clock.now();
    const frames = new Map<number, string>();
    for (const c of this.clients) {
      if (c.spec !== r.spec) continue;
      let text = frames.get(c.count);
      if (!text) frames.set(c.count, (text = this.frameOf(r, c.count)));
      c.deliver(text, now);
    }
  }

  private frameOf(r: GlobalRanking, count: number): string {
    const spec = parseSpecKey(r.spec);
    const frame: RankingFrame = {
      type: 'ranking',
      count,
      window: spec.window,
      filter: filterOf(spec),
      final: r.final,
      from: isoOf(minuteStartMs(r.end - spec.window)),
      to: isoOf(minuteStartMs(r.end)),
      ads: r.list.slice(0, count),
      at: isoOf(this.clock.now()),
    };
    return JSON.stringify(frame);
  }

  /** Flushes coalesced rankings to clients that drained; drops clients slow for too long. */
  private sweep(): void {
    const now = this.clock.now();
    for (const c of this.clients) {
      const spec = c.spec;
      const buffered = c.buffered;
      if (c.sweep(now)) {
        this.deps.log.warn({ spec, buffered }, 'slow websocket client disconnected');
        this.deps.events.emit('ws', { kind: 'slow_disconnect' });
      }
    }
  }

  private scheduleSweep(): void {
    if (this.closed) return;
    this.sweepTimer = this.clock.setTimeout(() => {
      this.sweep();
      this.scheduleSweep();
    }, SWEEP_INTERVAL_MS);
  }
}

/**
 * Registers `GET /v1/ws/popular_ads` on `app` (see {@link WsFeeds}); the feeds close with the app.
 */
export function wsFeedRoutes(app: FastifyInstance, o: WsFeedOptions, deps: WsFeedDeps): WsFeeds {
  const feeds = new WsFeeds(o, deps);
  feeds.register(app);
  return feeds;
}
