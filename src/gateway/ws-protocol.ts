/**
 * The live top-N WebSocket protocol (`GET /v1/ws/popular_ads?count=N&window=M[&country=XX]`).
 * All frames are JSON text.
 *
 * Server → client:
 * - `subscribed`: the subscription now in force (on connect and after each `subscribe`).
 * - `ranking`: the current ranking at once after `subscribed`, then one at each minute close
 *   (`final: true`) and provisional updates for the open minute (`final: false`, at most 1/s).
 *   A slow client receives only the newest ranking (older unsent ones are coalesced away).
 * - `error`: a bad `subscribe` (the previous subscription stays) or bad connect parameters (the
 *   socket then closes with 1008).
 * - `pong`: answer to `ping`.
 *
 * Client → server:
 * - `{"type":"subscribe","count":10,"window":5,"filter":{"country":"US"}}` changes the subscription
 *   (`filter` optional; keys are configured dimensions or cubes, like the REST query parameters).
 * - `{"type":"ping"}`.
 *
 * Anything else (a binary frame, text that is not a JSON object, an unknown `type`, a `filter` that
 * is not an object of strings) gets an `error` frame with ADAGG_E_BAD_PARAM; the subscription in
 * force stays. A subscription beyond the limits (ADAGG_WS_MAX_SUBSCRIPTIONS distinct specs per
 * socket within a spec lease, ADAGG_WS_MAX_SPECS_TOTAL per gateway) gets ADAGG_E_TOO_MANY_SUBSCRIPTIONS.
 * Frames over 64 KiB close the socket with 1009. The server pings every ADAGG_WS_HEARTBEAT_MS and
 * closes a socket that answered no ping within that period; a socket whose unsent bytes stay over
 * ADAGG_WS_MAX_BUFFERED_BYTES for ADAGG_WS_SLOW_CLIENT_TIMEOUT_MS is closed (1013).
 */
import { AdaggError, ErrorCode } from '../errors.ts';

export interface RankingFrame {
  type: 'ranking';
  count: number;
  window: number;
  filter: Record<string, string> | null;
  final: boolean;
  /** Window start (inclusive) and end (exclusive), ISO-8601 minute boundaries. */
  from: string;
  to: string;
  ads: Array<{ ad_id: string; count: number }>;
  /** Server time the ranking was computed (ISO-8601), for delivery-delay measurements. */
  at: string;
}

export interface SubscribedFrame {
  type: 'subscribed';
  count: number;
  window: number;
  filter: Record<string, string> | null;
}

export interface ErrorFrame {
  type: 'error';
  code: string;
  error: string;
}

export type ServerFrame = RankingFrame | SubscribedFrame | ErrorFrame | { type: 'pong' };

export type ClientFrame =
  | { type: 'subscribe'; count?: number | string; window?: number | string; filter?: Record<string, string> | null }
  | { type: 'ping' };

function badFrame(msg: string): AdaggError {
  return new AdaggError(ErrorCode.BadParam, msg);
}

/**
 * A client's text frame as a {@link ClientFrame}, or ADAGG_E_BAD_PARAM. Only the frame's shape is
 * checked here; `count`, `window` and the filter's keys and values are checked like the REST
 * parameters by the feed.
 */
export function parseClientFrame(text: string): ClientFrame {
  let f: unknown;
  try {
    f = JSON.parse(text);
  } catch {
    throw badFrame('frame is not JSON');
  }
  // `null`, numbers, strings and arrays are valid JSON but not frames.
  if (typeof f !== 'object' || f === null || Array.isArray(f)) throw badFrame('frame is not a JSON object');
  const frame = f as Record<string, unknown>;
  if (frame.type === 'ping') return { type: 'ping' };
  if (frame.type !== 'subscribe') throw badFrame('unknown frame type (expected "subscribe" or "ping")');
  const { count, window, filter } = frame;
  for (const [name, v] of [['count', count], ['window', window]] as const) {
    if (v !== undefined && typeof v !== 'number' && typeof v !== 'string') throw badFrame(`parameter ${name}: must be a whole number`);
  }
  if (filter !== undefined && filter !== null) {
    if (typeof filter !== 'object' || Array.isArray(filter)) throw badFrame('filter must be an object of dimension names to values, e.g. {"country":"US"}');
    for (const [k, v] of Object.entries(filter)) {
      if (typeof v !== 'string') throw badFrame(`filter ${k}: must be a string`);
    }
  }
  return {
    type: 'subscribe',
    ...(count === undefined ? {} : { count: count as number | string }),
    ...(window === undefined ? {} : { window: window as number | string }),
    ...(filter === undefined ? {} : { filter: filter as Record<string, string> | null }),
  };
}
