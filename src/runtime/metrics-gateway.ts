import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RuntimeEvents } from './events.ts';

const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

/**
 * The gateway process's own metrics, from runtime events: HTTP requests (labelled by route
 * pattern, never the raw URL, so the series stay bounded) and the top-N reducer it hosts.
 */
export function registerGatewayMetrics(events: RuntimeEvents, registry: Registry): void {
  const duration = new Histogram({
    name: 'adagg_http_request_duration_seconds',
    help: 'HTTP request duration by route pattern and method (its _count: requests)',
    labelNames: ['route', 'method'],
    buckets: HTTP_BUCKETS,
    registers: [registry],
  });
  const errors = new Counter({
    name: 'adagg_http_request_errors_total',
    help: 'HTTP requests answered with an error status (4xx or 5xx), by route pattern, method and status',
    labelNames: ['route', 'method', 'status'],
    registers: [registry],
  });
  events.on('http', (e) => {
    duration.observe({ route: e.route, method: e.method }, e.seconds);
    if (e.status >= 400) errors.inc({ route: e.route, method: e.method, status: String(e.status) });
  });

  const updates = new Counter({ name: 'adagg_reducer_updates_total', help: 'Ranking updates from shards applied by the top-N reducer', registers: [registry] });
  const resyncs = new Counter({ name: 'adagg_reducer_resyncs_total', help: 'Shard ranking states re-read by the reducer after a gap in updates', registers: [registry] });
  const rankings = new Counter({
    name: 'adagg_reducer_rankings_total',
    help: 'Global rankings the reducer emitted, by kind (final at minute close, provisional in between)',
    labelNames: ['kind'],
    registers: [registry],
  });
  const specs = new Gauge({ name: 'adagg_reducer_specs', help: 'Live ranking specs the reducer holds registered with the shards', registers: [registry] });
  const queued = new Gauge({ name: 'adagg_reducer_mailbox_messages', help: 'Messages waiting in the reducer mailbox', registers: [registry] });
  // Present from the start, so dashboards and alerts find the series before the first report.
  rankings.inc({ kind: 'final' }, 0);
  rankings.inc({ kind: 'provisional' }, 0);
  events.on('reducer', (e) => {
    updates.inc(e.updates);
    resyncs.inc(e.resyncs);
    rankings.inc({ kind: 'final' }, e.finals);
    rankings.inc({ kind: 'provisional' }, e.provisionals);
    specs.set(e.specs);
    queued.set(e.queued);
  });
}
