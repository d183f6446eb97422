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
 */
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
  | { type: 'subscribe'; count?: number; window?: number; filter?: Record<string, string> | null }
  | { type: 'ping' };
