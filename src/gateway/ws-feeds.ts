import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import type { RawData, WebSocket } from 'ws';
import { AdaggError, ErrorCode } from '../errors.ts';
import { DEFAULTS } from '../options.ts';
import { parseSpecKey, specKey, type RankSpec } from '../model/rank-spec.ts';
import type { GlobalRanking } from '../model/rankings.ts';
import { isoOf, minuteStartMs } from '../model/time.ts';
import { systemClock, type Clock, type TimerHandle } from '../runtime/clock.ts';
import type { RuntimeEvents } from '../runtime/events.ts';
import type { Logger } from '../runtime/logger.ts';
import { DEFAULT_SPEC_LEASE_MS, type TopNReducerHost } from '../runtime/topn-reducer-host.ts';
import { errorResponses } from './openapi.ts';
import { filterParam, filterToRecord, intParam, type Query } from './params.ts';
import { filterParams, wholeNumberParam } from './schemas.ts';
import { WsFeedClient, errorFrame, type WsClientLimits } from './ws-feed-client.ts';
import { parseClientFrame, type RankingFrame } from './ws-protocol.ts';

export { WsFeedClient } from './ws-feed-client.ts';

export interface WsFeedOptions {
  dimensions: readonly string[];
  cubes: readonly string[];
  /** ADAGG_COUNTRY_ALPHA3: how `country` filter values are read. @default 'map' */
  countryAlpha3?: string;
  /** Largest `count` (the shards' top-K depth). */
  topnDepth: number;
  maxLiveWindow: number;
  /** Above this many unsent bytes a client is slow: nothing more is written, only the newest ranking waits. */
  wsMaxBufferedBytes: number;
  /** A client slow for this long is disconnected (1013). */
  wsSlowClientTimeoutMs: number;
  /** Distinct specs a socket may hold within a spec lease. @default DEFAULTS.wsMaxSubscriptions */
  wsMaxSubscriptions?: number | undefined;
  /** Ping period; a socket silent for a whole period is closed. @default DEFAULTS.wsHeartbeatMs */
  wsHeartbeatMs?: number | undefined;
  /** The reducer's spec lease (a spec a socket left stays in the shards this long). @default 60000 */
  specLeaseMs?: number | undefined;
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
/** Largest frame a client may send; a larger one closes the socket with 1009. */
const MAX_FRAME_BYTES = 64 * 1024;
/** Connect parameters that are not filters. */
const CONNECT_PARAMS = ['count', 'window'] as const;

function filterOf(spec: RankSpec): Record<string, string> | null {
  return filterToRecord(spec.dim === null ? undefined : { dim: spec.dim, value: spec.value ?? '' });
}

/**
 * `GET /v1/ws/popular_ads`: live top-N over WebSocket (protocol in ws-protocol.ts). Subscribers of
 * the same spec (window × filter) share one reducer computation; each gets the first `count`
 * entries. Every input is bounded: frames (64 KiB), specs per socket and in total (the reducer
 * host's cap), unsent bytes per socket, and silent peers (a ping heartbeat). Time (frame stamps,
 * slow-client timeouts, the sweep, the heartbeat) comes from the injected clock.
 */
export class WsFeeds {
  private readonly clients = new Set<WsFeedClient>();
  private readonly clock: Clock;
  private readonly limits: WsClientLimits;
  private readonly heartbeatMs: number;
  private readonly offRanking: () => void;
  private sweepTimer: TimerHandle | undefined;
  private heartbeatTimer: TimerHandle | undefined;
  private closed = false;

  constructor(
    private readonly opts: WsFeedOptions,
    private readonly deps: WsFeedDeps,
  ) {
    this.clock = deps.clock ?? systemClock;
    this.limits = {
      wsMaxBufferedBytes: opts.wsMaxBufferedBytes,
      wsSlowClientTimeoutMs: opts.wsSlowClientTimeoutMs,
      wsMaxSubscriptions: opts.wsMaxSubscriptions ?? DEFAULTS.wsMaxSubscriptions,
      specHoldMs: opts.specLeaseMs ?? DEFAULT_SPEC_LEASE_MS,
    };
    this.heartbeatMs = opts.wsHeartbeatMs ?? DEFAULTS.wsHeartbeatMs;
    this.offRanking = deps.rankings.onRanking((r) => this.onRanking(r));
    this.scheduleSweep();
    this.scheduleHeartbeat();
  }

  /** Registers the WebSocket route on `app` and closes the feeds with it. */
  register(app: FastifyInstance): void {
    void app.register(websocket, {
      // autoPong off: pongs to a client's pings go through the feed's buffer check like every frame.
      options: { maxPayload: MAX_FRAME_BYTES, autoPong: false },
      // A socket error (a frame over the limit, bad UTF-8, a reset) ends that socket only; logged
      // at debug, since a hostile client could otherwise fill the logs.
      errorHandler: (err, socket) => {
        this.deps.log.debug({ err }, 'websocket error');
        socket.terminate();
      },
    });
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

  /** Stops the sweep, the heartbeat and the ranking listener and drops every client. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.sweepTimer) this.clock.clearTimeout(this.sweepTimer);
    if (this.heartbeatTimer) this.clock.clearTimeout(this.heartbeatTimer);
    this.offRanking();
    for (const c of this.clients) c.terminate();
  }

  /** A new socket: subscribe it from its query parameters, or refuse it. */
  connect(ws: WebSocket, query: Query, invalid?: Error | undefined): void {
    const client = new WsFeedClient(ws, this.limits, this.deps.events);
    this.deps.events.emit('ws', { kind: 'connect' });
    try {
      if (invalid) throw invalid;
      const sub = this.parseSubscription(query.count, query.window, filterParam(query, CONNECT_PARAMS, this.opts.dimensions, this.opts.cubes, this.opts.countryAlpha3));
      this.subscribe(client, sub.spec, sub.count);
    } catch (err) {
      client.refuse(err, this.clock.now());
      ws.on('close', () => this.deps.events.emit('ws', { kind: 'disconnect' }));
      return;
    }
    this.clients.add(client);
    ws.on('message', (data, isBinary) => this.onMessage(client, data, isBinary));
    ws.on('ping', (data) => client.onPing(data, this.clock.now()));
    ws.on('pong', () => client.onPong());
    ws.on('close', () => this.disconnect(client));
  }

  private schema(): Record<string, unknown> {
    const o = this.opts;
    return {
      summary: 'Live top-N rankings (WebSocket)',
      description:
        'All frames are JSON. The server sends subscribed, ranking (final at each minute close, provisional at most once a second), error {code, error} and pong; the client sends {"type":"subscribe","count":N,"window":M,"filter":{...}} and {"type":"ping"}. Errors are frames, not HTTP statuses: ADAGG_E_BAD_PARAM (a frame or parameter is malformed or out of range; filters are checked like REST parameters), ADAGG_E_FILTER_NOT_PREAGGREGATED (the filter is not a configured dimension or cube) and ADAGG_E_TOO_MANY_SUBSCRIPTIONS (over ADAGG_WS_MAX_SUBSCRIPTIONS distinct specs on this socket within a spec lease, or ADAGG_WS_MAX_SPECS_TOTAL on the gateway); bad connect parameters close the socket with 1008, a bad subscribe keeps the old subscription. Frames over 64 KiB close the socket with 1009; a socket that answers no ping within ADAGG_WS_HEARTBEAT_MS is closed, and one whose unsent data stays over ADAGG_WS_MAX_BUFFERED_BYTES for ADAGG_WS_SLOW_CLIENT_TIMEOUT_MS is closed with 1013.',
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
      // Refusals before the upgrade, as for any request: the connection caps and the headers timeout.
      response: {
        101: { description: 'Switching Protocols: the WebSocket feed' },
        ...errorResponses([ErrorCode.NotFound, ErrorCode.TooManyConnections, ErrorCode.RequestTimeout]),
      },
    };
  }

  private parseSubscription(count: unknown, window: unknown, filter: { dim: string; value: string } | undefined): { spec: RankSpec; count: number } {
    const q: Query = { count: count === undefined ? undefined : String(count), window: window === undefined ? undefined : String(window) };
    const n = intParam(q, 'count', 10, 1, this.opts.topnDepth);
    const w = intParam(q, 'window', 1, 1, this.opts.maxLiveWindow);
    return { spec: { window: w, dim: filter?.dim ?? null, value: filter?.value ?? null }, count: n };
  }

  /**
   * Moves `client` to `spec`: refused (ADAGG_E_TOO_MANY_SUBSCRIPTIONS) past the socket's or the
   * gateway's spec limit, in which case the old subscription stays and nothing is registered.
   */
  private subscribe(client: WsFeedClient, spec: RankSpec, count: number): void {
    const key = specKey(spec);
    const now = this.clock.now();
    client.admit(key, now);
    // Watch the new spec before leaving the old one, so a refusal leaves the client as it was.
    const watched = this.deps.rankings.watch(spec);
    if (client.spec) this.deps.rankings.unwatch(client.spec);
    client.subscribed(watched, count, now);
    client.send({ type: 'subscribed', count, window: spec.window, filter: filterOf(spec) }, now);
    const cur = this.deps.rankings.current(key);
    if (cur.final) client.deliver(this.frameOf(cur.final, count), now);
    if (cur.prov && (!cur.final || cur.prov.end > cur.final.end)) client.deliver(this.frameOf(cur.prov, count), now);
  }

  private onMessage(client: WsFeedClient, data: RawData, isBinary: boolean): void {
    // Last resort: whatever a frame holds, a fault in handling it costs this socket one error
    // frame, never the process (an exception thrown from a 'message' listener is uncaught).
    try {
      if (isBinary) throw new AdaggError(ErrorCode.BadParam, 'binary frames are not supported: send JSON text frames');
      this.onFrame(client, Buffer.isBuffer(data) ? data.toString('utf8') : Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]).toString('utf8'));
    } catch (err) {
      if (!(err instanceof AdaggError)) this.deps.log.error({ err }, 'WebSocket frame handling failed');
      const frame = err instanceof AdaggError ? errorFrame(err) : { type: 'error' as const, code: ErrorCode.Internal, error: 'the frame could not be handled' };
      client.send(frame, this.clock.now());
    }
  }

  /** One text frame; a bad one throws an AdaggError (sent back as an error frame). */
  private onFrame(client: WsFeedClient, text: string): void {
    const f = parseClientFrame(text);
    if (f.type === 'ping') return client.send({ type: 'pong' }, this.clock.now());
    // The filter is checked like REST query parameters (at most 64 characters, configured dimensions).
    const filter = filterParam(Object.fromEntries(Object.entries(f.filter ?? {})), [], this.opts.dimensions, this.opts.cubes, this.opts.countryAlpha3);
    const sub = this.parseSubscription(f.count, f.window, filter);
    this.subscribe(client, sub.spec, sub.count);
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

  /** Flushes coalesced rankings to clients that drained; closes clients slow for too long. */
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

  /** Pings every client; terminates those that answered no ping since the last round (dead peers). */
  private heartbeat(): void {
    const now = this.clock.now();
    let dead = 0;
    for (const c of this.clients) if (c.heartbeat(now)) dead++;
    if (dead > 0) this.deps.log.info({ dead }, 'silent websocket clients closed');
  }

  private scheduleHeartbeat(): void {
    if (this.closed) return;
    this.heartbeatTimer = this.clock.setTimeout(() => {
      this.heartbeat();
      this.scheduleHeartbeat();
    }, this.heartbeatMs);
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
