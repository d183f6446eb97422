/**
 * The follower's Prometheus metrics, per followed path (label `file`), served on
 * `--metrics-port` at GET /metrics:
 *   adagg_tail_lines_read_total, adagg_tail_lines_accepted_total,
 *   adagg_tail_lines_duplicate_total, adagg_tail_lines_rejected_total{code},
 *   adagg_tail_bytes_behind (file size − acknowledged offset), adagg_tail_offset_bytes,
 *   adagg_tail_rotations_total{kind="rename"|"truncate"}, adagg_tail_post_failures_total.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

export class TailMetrics {
  readonly registry = new Registry();
  readonly read = new Counter({ name: 'adagg_tail_lines_read_total', help: 'Lines read from the file (blank ones included)', labelNames: ['file'], registers: [this.registry] });
  readonly accepted = new Counter({ name: 'adagg_tail_lines_accepted_total', help: 'Lines the gateway stored for the first time', labelNames: ['file'], registers: [this.registry] });
  readonly duplicate = new Counter({
    name: 'adagg_tail_lines_duplicate_total',
    help: 'Lines the gateway reported as already ingested (a JetStream duplicate publish)',
    labelNames: ['file'],
    registers: [this.registry],
  });
  readonly rejected = new Counter({ name: 'adagg_tail_lines_rejected_total', help: 'Lines refused, by code', labelNames: ['file', 'code'], registers: [this.registry] });
  readonly behind = new Gauge({ name: 'adagg_tail_bytes_behind', help: 'File size minus the acknowledged offset', labelNames: ['file'], registers: [this.registry] });
  readonly offset = new Gauge({ name: 'adagg_tail_offset_bytes', help: 'Acknowledged offset in the file being read', labelNames: ['file'], registers: [this.registry] });
  readonly rotations = new Counter({ name: 'adagg_tail_rotations_total', help: 'Rotations seen: rename or truncate', labelNames: ['file', 'kind'], registers: [this.registry] });
  readonly postFailures = new Counter({ name: 'adagg_tail_post_failures_total', help: 'Failed POST /v1/clicks attempts (each retried)', registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'adagg_tail_' });
  }

  /** Serves GET /metrics on host:port (0: any free port); resolves with the bound port. */
  async serve(host: string, port: number): Promise<{ port: number; close: () => Promise<void> }> {
    const server: Server = createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    return {
      port: (server.address() as AddressInfo).port,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }
}
