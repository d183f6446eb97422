import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { AdaggError, ErrorCode } from '../errors.ts';
import { ServiceLifecycle, type LifecycleState, type Service } from './lifecycle.ts';
import type { Logger } from './logger.ts';

export interface MetricsServerOptions {
  /** Port; 0 picks a free one. */
  port: number;
  /** Address to bind: the node has no token system, so keep it private (loopback or a private interface). */
  host: string;
  /** What `GET /readyz` reports (200 when `ok`, else 503). @default always ready */
  ready?: () => { ok: boolean; checks: Record<string, boolean> };
}

/**
 * `GET /metrics` (Prometheus text format) of a process without the gateway: each `adagg node`,
 * with `GET /healthz` (the process answers) and `GET /readyz` (`opts.ready`) for probes. Nothing
 * else is served (404); it holds no token system, which is why it binds
 * ADAGG_METRICS_HOST, loopback by default. Scrapes are answered from the registry only, never
 * from NATS or Redis, so they stay cheap and answer while those are down.
 *
 * @example
 * const server = new MetricsServer(createMetrics(node.events), { port: 9464, host: '127.0.0.1' }, log);
 * const { url } = await server.start(); // url + '/metrics'
 */
export class MetricsServer implements Service<{ url: string; port: number }> {
  private readonly server: Server;
  private readonly life: ServiceLifecycle;

  constructor(
    private readonly registry: Registry,
    private readonly opts: MetricsServerOptions,
    log: Logger,
  ) {
    this.life = new ServiceLifecycle('MetricsServer', log);
    this.server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (req.method === 'GET' && path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok' }));
        return;
      }
      if (req.method === 'GET' && path === '/readyz') {
        const r = this.opts.ready?.() ?? { ok: true, checks: {} };
        res.writeHead(r.ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: r.ok ? 'ready' : 'not ready', checks: r.checks }));
        return;
      }
      if (req.method !== 'GET' || path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ code: ErrorCode.NotFound, error: 'only GET /metrics, /healthz and /readyz are served here' }));
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: unknown) => {
          log.error({ err }, 'metrics collection failed');
          res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ code: ErrorCode.Internal, error: 'metrics collection failed' }));
        },
      );
    });
    // Scrapers keep connections alive; short timeouts keep a stuck one from holding a socket.
    this.server.requestTimeout = 10_000;
    this.server.headersTimeout = 10_000;
  }

  get state(): LifecycleState {
    return this.life.state;
  }

  /** Listens; resolves with the bound address. Starts once. */
  start(): Promise<{ url: string; port: number }> {
    return this.life.start(
      () =>
        new Promise((resolve, reject) => {
          this.server.once('error', (err) =>
            reject(new AdaggError(ErrorCode.BadOption, `metrics cannot listen on ${this.opts.host}:${this.opts.port} (ADAGG_METRICS_HOST/ADAGG_METRICS_PORT): ${err.message}`, { cause: err })),
          );
          this.server.listen(this.opts.port, this.opts.host, () => {
            this.server.removeAllListeners('error');
            const { port } = this.server.address() as AddressInfo;
            const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
            resolve({ url: `http://${host}:${port}`, port });
          });
        }),
    );
  }

  /** Idempotent: stops listening and ends open (keep-alive) connections. */
  close(): Promise<void> {
    return this.life.close(() => [
      [
        'http',
        () =>
          new Promise<void>((resolve) => {
            this.server.close(() => resolve());
            this.server.closeAllConnections();
          }),
      ],
    ]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}
