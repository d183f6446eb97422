/**
 * Bounds on the gateway's sockets: how many are open in total and per client address, and how
 * long a request may take to arrive. Every TCP connection (an HTTP keep-alive socket, a WebSocket,
 * one that never sends a byte) counts from accept to close; one over a cap is answered
 * `503 {code: ADAGG_E_TOO_MANY_CONNECTIONS}` on the raw socket and closed, before node's HTTP parser
 * sees it, so it costs neither a request nor a file descriptor for long.
 *
 * @example
 * const app = Fastify({ ...httpTimeoutOptions(o) });
 * const limiter = new ConnectionLimiter(o).attach(app.server);
 */
import type { Server, ServerOptions } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyServerOptions } from 'fastify';
import { ErrorCode } from '../errors.ts';
import { DEFAULTS } from '../options.ts';

export interface ConnectionLimitOptions {
  /** Open sockets in total. */
  maxConnections: number;
  /** Open sockets per client address. */
  maxConnectionsPerClient: number;
}

export interface HttpTimeoutOptions {
  /** The request line and headers must be in by then (also bounds a socket that sends nothing). */
  headersTimeoutMs: number;
  /** The whole request, body included, must be in by then. */
  requestTimeoutMs: number;
  /** An idle keep-alive socket is closed after this. */
  keepAliveTimeoutMs: number;
}

/** A refused socket is given this long to read its 503 before it is cut. */
const REFUSED_LINGER_MS = 1000;
/** Refused sockets lingering at once; beyond, a refused socket is cut without an answer. */
const MAX_LINGERING = 256;

/** The client address a socket counts against (an IPv4-mapped IPv6 address as plain IPv4). */
export function clientAddress(socket: Socket): string {
  const a = socket.remoteAddress ?? 'unknown';
  return a.startsWith('::ffff:') ? a.slice('::ffff:'.length) : a;
}

function refusal(error: string): string {
  const body = JSON.stringify({ code: ErrorCode.TooManyConnections, error });
  return (
    'HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n${body}`
  );
}

/**
 * Counts a server's open sockets in total and per client address, and refuses those over a cap.
 * Counts are released on each socket's `close`, however it ends.
 */
export class ConnectionLimiter {
  private open = 0;
  private readonly perClient = new Map<string, number>();
  private lingering = 0;
  private refusedTotal = 0;

  constructor(private readonly opts: ConnectionLimitOptions) {}

  /** Open counted sockets. */
  get total(): number {
    return this.open;
  }

  /** Sockets refused since start. */
  get refused(): number {
    return this.refusedTotal;
  }

  /** Open counted sockets of one client address. */
  countOf(address: string): number {
    return this.perClient.get(address) ?? 0;
  }

  /**
   * Puts the limiter in front of `server`'s own connection handling: node's HTTP parser (and so
   * fastify and the WebSocket upgrade) only ever sees admitted sockets. Call before `listen`.
   */
  attach(server: Server): this {
    const handlers = server.listeners('connection') as Array<(socket: Socket) => void>;
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      if (!this.admit(socket)) return;
      for (const h of handlers) h.call(server, socket);
    });
    return this;
  }

  /** Counts `socket` and returns true, or answers it 503, closes it and returns false. */
  admit(socket: Socket): boolean {
    const address = clientAddress(socket);
    const mine = this.perClient.get(address) ?? 0;
    if (this.open >= this.opts.maxConnections) {
      this.refuse(socket, `the gateway has ${this.open} open connections (ADAGG_MAX_CONNECTIONS=${this.opts.maxConnections}); retry later`);
      return false;
    }
    if (mine >= this.opts.maxConnectionsPerClient) {
      this.refuse(socket, `${mine} connections are open from ${address} (ADAGG_MAX_CONNECTIONS_PER_CLIENT=${this.opts.maxConnectionsPerClient}); reuse them or close some`);
      return false;
    }
    this.open++;
    this.perClient.set(address, mine + 1);
    socket.once('close', () => {
      this.open--;
      const n = (this.perClient.get(address) ?? 1) - 1;
      if (n > 0) this.perClient.set(address, n);
      else this.perClient.delete(address);
    });
    return true;
  }

  /**
   * Writes the 503, half-closes, and discards whatever the client sends until it closes or the
   * linger ends: closing at once with its request unread would reset the connection, and the
   * client would see a reset instead of the answer.
   */
  private refuse(socket: Socket, error: string): void {
    this.refusedTotal++;
    socket.on('error', () => undefined);
    if (this.lingering >= MAX_LINGERING) {
      socket.destroy();
      return;
    }
    this.lingering++;
    const timer = setTimeout(() => socket.destroy(), REFUSED_LINGER_MS);
    timer.unref();
    socket.once('close', () => {
      this.lingering--;
      clearTimeout(timer);
    });
    socket.resume();
    socket.end(refusal(error));
  }
}

/**
 * Fastify server options for the request timeouts. Node checks them every
 * `connectionsCheckingInterval`, so that interval is kept well under the shortest timeout; a
 * timed-out request is answered 408 by the gateway's clientErrorHandler (http-plugin.ts).
 */
export function httpTimeoutOptions(o: HttpTimeoutOptions): Pick<FastifyServerOptions, 'requestTimeout' | 'keepAliveTimeout'> & { http: ServerOptions } {
  return {
    requestTimeout: o.requestTimeoutMs,
    keepAliveTimeout: o.keepAliveTimeoutMs,
    http: {
      headersTimeout: o.headersTimeoutMs,
      requestTimeout: o.requestTimeoutMs,
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(Math.min(o.headersTimeoutMs, o.requestTimeoutMs) / 4))),
    },
  };
}

/** Every socket bound of the gateway. */
export type ConnectionBounds = ConnectionLimitOptions & HttpTimeoutOptions;

/** The bounds given, with the option defaults for the others. */
export function connectionBounds(o: Partial<ConnectionBounds>): ConnectionBounds {
  return {
    maxConnections: o.maxConnections ?? DEFAULTS.maxConnections,
    maxConnectionsPerClient: o.maxConnectionsPerClient ?? DEFAULTS.maxConnectionsPerClient,
    headersTimeoutMs: o.headersTimeoutMs ?? DEFAULTS.headersTimeoutMs,
    requestTimeoutMs: o.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    keepAliveTimeoutMs: o.keepAliveTimeoutMs ?? DEFAULTS.keepAliveTimeoutMs,
  };
}
