import type { WebSocket } from 'ws';
import { AdaggError, ErrorCode } from '../errors.ts';
import type { RuntimeEvents } from '../runtime/events.ts';
import type { ServerFrame } from './ws-protocol.ts';

/** The limits one socket lives under (see the options of the same names). */
export interface WsClientLimits {
  /** Above this many unsent bytes nothing more is written; only the newest ranking waits. */
  wsMaxBufferedBytes: number;
  /** A socket over the buffer limit for this long is closed. */
  wsSlowClientTimeoutMs: number;
  /** Distinct specs this socket may hold at once (its current one and those still leased). */
  wsMaxSubscriptions: number;
  /** How long a spec stays registered in the shards after the socket leaves it (its lease). */
  specHoldMs: number;
}

/** A slow socket asked to close (1013) is cut this long after if it has not closed by then. */
const CLOSE_GRACE_MS = 1000;

/** Closes a socket with a reason under the 123-byte limit of a close frame. */
function closeWith(ws: WebSocket, code: number, reason: string): void {
  try {
    ws.close(code, reason.slice(0, 120));
  } catch {
    ws.terminate();
  }
}

/**
 * One WebSocket subscriber: its subscription, the specs it holds, its coalescing and liveness
 * state. Every byte the server sends on the socket (control frames, rankings, pings, pongs) goes
 * through {@link WsFeedClient.write}, which writes nothing while the socket's unsent bytes are over
 * the limit: a client that does not read can cost at most the limit plus one frame, and is closed
 * once it stays backed up for the slow-client timeout. While backed up it keeps only the newest
 * ranking (`pending`), sent when the buffer drains.
 */
export class WsFeedClient {
  /** The reducer spec key watched ('' before the first subscription). */
  private specKey = '';
  private rankCount = 10;
  /** The newest ranking not yet sent because the socket was backed up (coalescing). */
  private pending: string | undefined;
  private slowSince: number | undefined;
  private closingSince: number | undefined;
  private awaitingPong = false;
  /** Specs this socket subscribed to → when its hold on them ends (Infinity: the current one). */
  private readonly holds = new Map<string, number>();

  constructor(
    private readonly ws: WebSocket,
    private readonly limits: WsClientLimits,
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

  /**
   * Refuses (ADAGG_E_TOO_MANY_SUBSCRIPTIONS) a new spec beyond the socket's limit. A spec it left
   * still counts until its lease in the shards runs out, so changing specs quickly cannot pile up
   * registrations either.
   */
  admit(key: string, now: number): void {
    if (key === this.specKey || this.holds.has(key)) return;
    for (const [k, until] of this.holds) if (until < now) this.holds.delete(k);
    if (this.holds.size < this.limits.wsMaxSubscriptions) return;
    throw new AdaggError(
      ErrorCode.TooManySubscriptions,
      `this socket already holds ${this.holds.size} ranking specs (ADAGG_WS_MAX_SUBSCRIPTIONS); reuse one or wait for a lease to end`,
    );
  }

  /** Takes a new subscription (the reducer's spec key); an unsent ranking of the old one is dropped. */
  subscribed(key: string, count: number, now: number): void {
    if (this.specKey && this.specKey !== key) this.holds.set(this.specKey, now + this.limits.specHoldMs);
    this.holds.set(key, Infinity);
    this.specKey = key;
    this.rankCount = count;
    this.pending = undefined;
  }

  /** Sends a control frame (subscribed, error, pong), unless the socket is backed up (then it is dropped). */
  send(frame: ServerFrame, now: number): void {
    this.write(JSON.stringify(frame), now);
  }

  /** Sends a ranking, or keeps it as the only pending one while the socket is backed up. */
  deliver(text: string, now: number): void {
    if (this.write(text, now)) {
      this.pending = undefined;
      this.events.emit('ws', { kind: 'sent' });
      return;
    }
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.pending !== undefined) this.events.emit('ws', { kind: 'coalesced' });
    this.pending = text; // coalesce: only the newest ranking waits
  }

  /** Answers a protocol-level ping (ws's automatic pong is off, so it too meets the buffer check). */
  onPing(data: Buffer, now: number): void {
    if (this.writable(now)) this.ws.pong(data);
  }

  onPong(): void {
    this.awaitingPong = false;
  }

  /**
   * A heartbeat: a socket that answered no ping since the last heartbeat is dead and terminated
   * (returns true); otherwise it is pinged. A backed-up socket is not pinged: the slow-client
   * timeout deals with it.
   */
  heartbeat(now: number): boolean {
    if (this.awaitingPong) {
      this.ws.terminate();
      return true;
    }
    if (this.writable(now)) {
      this.awaitingPong = true;
      this.ws.ping();
    }
    return false;
  }

  /**
   * Sends the pending ranking if the socket drained; closes (1013) a socket backed up for longer
   * than the slow-client timeout (then returns true), and cuts it if it has not closed a second later.
   */
  sweep(now: number): boolean {
    if (this.closingSince !== undefined) {
      if (now - this.closingSince > CLOSE_GRACE_MS) this.ws.terminate();
      return false;
    }
    if (this.writable(now)) {
      if (this.pending !== undefined) this.deliver(this.pending, now);
      return false;
    }
    if (this.slowSince === undefined || now - this.slowSince <= this.limits.wsSlowClientTimeoutMs) return false;
    this.pending = undefined;
    this.closingSince = now;
    closeWith(this.ws, 1013, 'slow client: unsent data over ADAGG_WS_MAX_BUFFERED_BYTES');
    return true;
  }

  /** Refuses the connection: an error frame, then close 1008. */
  refuse(err: unknown, now: number): void {
    const frame = errorFrame(err);
    this.send(frame, now);
    closeWith(this.ws, 1008, frame.code);
  }

  terminate(): void {
    this.ws.terminate();
  }

  /** Writes `text` unless the socket is closed or backed up; the only path to `ws.send`. */
  private write(text: string, now: number): boolean {
    if (!this.writable(now)) return false;
    this.ws.send(text);
    return true;
  }

  /** Whether the socket is open and under the buffer limit; tracks since when it is backed up. */
  private writable(now: number): boolean {
    if (this.ws.readyState !== this.ws.OPEN || this.closingSince !== undefined) return false;
    if (this.ws.bufferedAmount > this.limits.wsMaxBufferedBytes) {
      this.slowSince ??= now;
      return false;
    }
    this.slowSince = undefined;
    return true;
  }
}

/** An error as an `error` frame; anything but an AdaggError is reported as ADAGG_E_BAD_PARAM. */
export function errorFrame(err: unknown): ServerFrame & { type: 'error' } {
  const e = err instanceof AdaggError ? err : new AdaggError(ErrorCode.BadParam, String(err));
  return { type: 'error', code: e.code, error: e.message };
}
