import websocket from '@fastify/websocket';
import type { FastifyInstance } from 'fastify';
import type { WebSocket } from 'ws';
import { parseSpecKey, specKey, type RankSpec } from '../model/rank-spec.ts';
import type { GlobalRanking } from '../actors/topn-reducer.ts';
import { AdaggError, ErrorCode } from '../errors.ts';
import { isoOf, minuteStartMs } from '../model/time.ts';
import type { RuntimeEvents } from '../runtime/events.ts';
import type { Logger } from '../runtime/logger.ts';
import type { TopNReducerHost } from '../runtime/topn-reducer-host.ts';
import { filterFromRecord, filterToRecord, intParam, type Query } from './params.ts';
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

interface Subscriber {
  ws: WebSocket;
  spec: string;
  count: number;
  /** The newest ranking not yet sent because the socket was backed up (coalescing). */
  pending: string | undefined;
  slowSince: number | undefined;
}

/**
 * `GET /v1/ws/popular_ads`: live top-N over WebSocket (protocol in ws-protocol.ts). Subscribers of
 * the same spec (window × filter) share one reducer computation; each gets the first `count`
 * entries. A socket whose send buffer is over the limit is never written more: it keeps only the
 * newest ranking, sent when the buffer drains, and is closed if it stays backed up.
 */
export function wsFeedRoutes(app: FastifyInstance, reducer: TopNReducerHost, o: WsFeedOptions, log: Logger, events: RuntimeEvents): () => void {
  const maxBuffered = o.wsMaxBufferedBytes;
  const slowTimeout = o.wsSlowClientTimeoutMs;
  const subs = new Set<Subscriber>();

  const frameOf = (r: GlobalRanking, count: number): string => {
    const spec = parseSpecKey(r.spec);
    const frame: RankingFrame = {
      type: 'ranking',
      count,
      window: spec.window,
      filter: filterToRecord(spec.dim === null ? undefined : { dim: spec.dim, value: spec.value ?? '' }),
      final: r.final,
      from: isoOf(minuteStartMs(r.end - spec.window)),
      to: isoOf(minuteStartMs(r.end)),
      ads: r.list.slice(0, count),
      at: new Date().toISOString(),
    };
    return JSON.stringify(frame);
  };

  const deliver = (s: Subscriber, text: string): void => {
    if (s.ws.readyState !== s.ws.OPEN) return;
    if (s.ws.bufferedAmount > maxBuffered) {
      if (s.pending !== undefined) events.emit('ws', { kind: 'coalesced' });
      s.pending = text; // coalesce: only the newest ranking waits
      s.slowSince ??= Date.now();
      return;
    }
    s.pending = undefined;
    s.slowSince = undefined;
    s.ws.send(text);
    events.emit('ws', { kind: 'sent' });
  };

  const offRanking = reducer.onRanking((r) => {
    const cache = new Map<number, string>();
    for (const s of subs) {
      if (s.spec !== r.spec) continue;
      let text = cache.get(s.count);
      if (!text) cache.set(s.count, (text = frameOf(r, s.count)));
      deliver(s, text);
    }
  });

  // Flush coalesced rankings to clients that drained; drop clients slow for too long.
  const sweep = setInterval(() => {
    const now = Date.now();
    for (const s of subs) {
      if (s.pending === undefined) continue;
      if (s.ws.bufferedAmount <= maxBuffered) deliver(s, s.pending);
      else if (s.slowSince !== undefined && now - s.slowSince > slowTimeout) {
        log.warn({ spec: s.spec, buffered: s.ws.bufferedAmount }, 'slow websocket client disconnected');
        events.emit('ws', { kind: 'slow_disconnect' });
        s.pending = undefined;
        s.ws.terminate();
      }
    }
  }, 100);
  sweep.unref();

  const send = (ws: WebSocket, f: ServerFrame): void => ws.send(JSON.stringify(f));

  const parseSub = (count: unknown, window: unknown, filter: Record<string, string> | null | undefined): { spec: RankSpec; count: number } => {
    const q: Query = { count: count === undefined ? undefined : String(count), window: window === undefined ? undefined : String(window) };
    const n = intParam(q, 'count', 10, 1, o.topnDepth);
    const w = intParam(q, 'window', 1, 1, o.maxLiveWindow);
    const f = filterFromRecord(filter ?? {}, o.dimensions, o.cubes);
    return { spec: { window: w, dim: f?.dim ?? null, value: f?.value ?? null }, count: n };
  };

  const subscribe = (s: Subscriber, spec: RankSpec, count: number): void => {
    const key = specKey(spec);
    if (s.spec) reducer.unwatch(s.spec);
    s.spec = reducer.watch(spec);
    s.count = count;
    s.pending = undefined;
    send(s.ws, { type: 'subscribed', count, window: spec.window, filter: filterToRecord(spec.dim === null ? undefined : { dim: spec.dim, value: spec.value ?? '' }) });
    const cur = reducer.current(key);
    if (cur.final) deliver(s, frameOf(cur.final, count));
    if (cur.prov && (!cur.final || cur.prov.end > cur.final.end)) deliver(s, frameOf(cur.prov, count));
  };

  void app.register(websocket, { options: { maxPayload: 64 * 1024 } });
  void app.register(async (scoped) => {
    scoped.get<{ Querystring: Query }>('/v1/ws/popular_ads', { websocket: true }, (ws, req) => {
      const q = req.query;
      const { count, window, ...rest } = q;
      const s: Subscriber = { ws, spec: '', count: 10, pending: undefined, slowSince: undefined };
      events.emit('ws', { kind: 'connect' });
      try {
        const filter = Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, k === 'country' ? String(v).toUpperCase() : String(v)]));
        const sub = parseSub(count, window, filter);
        subs.add(s);
        subscribe(s, sub.spec, sub.count);
      } catch (err) {
        const e = err instanceof AdaggError ? err : new AdaggError(ErrorCode.BadParam, String(err));
        send(ws, { type: 'error', code: e.code, error: e.message });
        ws.close(1008, e.code);
        ws.on('close', () => events.emit('ws', { kind: 'disconnect' }));
        return;
      }
      ws.on('message', (data) => {
        let f: ClientFrame;
        try {
          f = JSON.parse(String(data)) as ClientFrame;
        } catch {
          send(ws, { type: 'error', code: ErrorCode.BadParam, error: 'frame is not JSON' });
          return;
        }
        if (f.type === 'ping') return send(ws, { type: 'pong' });
        if (f.type !== 'subscribe') return send(ws, { type: 'error', code: ErrorCode.BadParam, error: 'unknown frame type' });
        try {
          const sub = parseSub(f.count, f.window, f.filter);
          subscribe(s, sub.spec, sub.count);
        } catch (err) {
          const e = err instanceof AdaggError ? err : new AdaggError(ErrorCode.BadParam, String(err));
          send(ws, { type: 'error', code: e.code, error: e.message });
        }
      });
      ws.on('close', () => {
        events.emit('ws', { kind: 'disconnect' });
        subs.delete(s);
        if (s.spec) reducer.unwatch(s.spec);
      });
    });
  });

  return () => {
    clearInterval(sweep);
    offRanking();
    for (const s of subs) s.ws.terminate();
  };
}
