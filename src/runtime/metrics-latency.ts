import { Counter, Histogram, type Registry } from 'prom-client';
import type { RuntimeEvents } from './events.ts';

/** End-to-end buckets (seconds): from a few ms on a quiet cluster to minutes behind a backlog. */
const E2E_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Minute-close delay buckets (seconds): a minute closes after allowed lateness (+ idle timeout when quiet). */
const CLOSE_BUCKETS = [1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 300, 600];
const MINUTE_MS = 60_000;

/**
 * Observes `seconds` once per click. A stream message carries up to 500 clicks with one
 * acknowledgement time; weighting by clicks makes the quantiles "of clicks", not "of messages".
 */
function observeClicks(h: Histogram, seconds: number, clicks: number): void {
  const v = Math.max(0, seconds);
  for (let i = 0; i < clicks; i++) h.observe(v);
}

/**
 * The latency and failure metrics of shard actors, from runtime events (which cross worker
 * threads: every value is computed from the event, never from state of the emitting thread):
 *
 * - `adagg_ingest_to_counted_seconds`, `adagg_ingest_to_committed_seconds`: from JetStream's
 *   acknowledgement of a click's message (its store time, the NATS server's clock) to the shard
 *   actor counting it, and to the Redis commit that made it durable (the node's clock);
 * - `adagg_minute_close_delay_seconds`: wall time at close minus the end of the newest minute closed;
 * - `adagg_commit_failures_total{code}`, `adagg_fenced_total`, `adagg_dead_letters_total{reason,stage}`.
 */
export function registerLatencyMetrics(events: RuntimeEvents, registry: Registry): void {
  const toCounted = new Histogram({
    name: 'adagg_ingest_to_counted_seconds',
    help: 'Clicks: JetStream acknowledgement of the ingest publish (stream store time) to counted by the shard actor',
    buckets: E2E_BUCKETS,
    registers: [registry],
  });
  const toCommitted = new Histogram({
    name: 'adagg_ingest_to_committed_seconds',
    help: 'Clicks: JetStream acknowledgement of the ingest publish (stream store time) to committed to Redis with their counts',
    buckets: E2E_BUCKETS,
    registers: [registry],
  });
  const closeDelay = new Histogram({
    name: 'adagg_minute_close_delay_seconds',
    help: 'Wall time when a shard closed minutes minus the end of the newest minute it closed',
    buckets: CLOSE_BUCKETS,
    registers: [registry],
  });
  const commitFailures = new Counter({
    name: 'adagg_commit_failures_total',
    help: 'Shard commits that failed or were refused, by error code (ADAGG_E_FENCED: a newer owner holds the shard)',
    labelNames: ['code'],
    registers: [registry],
  });
  const fenced = new Counter({
    name: 'adagg_fenced_total',
    help: 'Shard actors stopped for good on this node because a newer owner epoch fenced them',
    registers: [registry],
  });
  const deadLetters = new Counter({
    name: 'adagg_dead_letters_total',
    help: 'Clicks sent to the dead-letter stream, by reason and stage (ingest: refused at the gateway, shard: refused by an actor)',
    labelNames: ['reason', 'stage'],
    registers: [registry],
  });

  events.on('batch', (e) => {
    if (e.skipped) return;
    if (e.ackedAt !== undefined && e.ackedAt >= 0 && e.at !== undefined) observeClicks(toCounted, (e.at - e.ackedAt) / 1000, e.counted);
    if (e.tooOld > 0) deadLetters.inc({ reason: 'too_old', stage: 'shard' }, e.tooOld);
  });
  events.on('commit', (e) => {
    if (e.at === undefined) return;
    for (const [ackedAt, clicks] of e.acked ?? []) observeClicks(toCommitted, (e.at - ackedAt) / 1000, clicks);
  });
  events.on('minuteClosed', (e) => closeDelay.observe(Math.max(0, (e.at - (e.closedThrough + 1) * MINUTE_MS) / 1000)));
  events.on('commitFailed', (e) => commitFailures.inc({ code: e.code }));
  events.on('fenced', () => fenced.inc());
  // The gateway dead-letters time-window refusals of well-formed clicks (src/ingest/click-ingest.ts).
  events.on('ingest', (e) => {
    for (const reason of ['too_old', 'in_future'] as const) {
      const n = e.codes[reason];
      if (n) deadLetters.inc({ reason, stage: 'ingest' }, n);
    }
  });
}
