import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RuntimeEvents } from './events.ts';
import { registerHotMetrics } from './hot/hot-metrics.ts';
import { registerGatewayMetrics } from './metrics-gateway.ts';
import { registerArchiveMetrics } from './metrics-archive.ts';
import { registerCorrectionMetrics } from './metrics-corrections.ts';
import { registerLatencyMetrics } from './metrics-latency.ts';
import { registerReconcileMetrics } from './metrics-reconcile.ts';
import { registerRiskMetrics } from './metrics-risk.ts';

/**
 * Prometheus metrics, fed only by runtime events: ingest, lag, watermark delay, late and
 * duplicate counts, commit latency and bytes, end-to-end latency, minute-close delay, failures,
 * HTTP and the reducer. Every metric is listed in docs/observability.md.
 *
 * Process metrics are the standard prom-client names (`process_*`, `nodejs_*`), unprefixed, so
 * stock Node.js dashboards and alerts work (they were `adagg_process_process_*` before).
 */
export function createMetrics(events: RuntimeEvents, registry = new Registry()): Registry {
  collectDefaultMetrics({ register: registry });
  registerIngestMetrics(events, registry);
  registerShardMetrics(events, registry);
  registerWsMetrics(events, registry);
  registerLatencyMetrics(events, registry);
  registerGatewayMetrics(events, registry);
  registerHotMetrics(events, registry);
  registerRiskMetrics(events, registry);
  registerReconcileMetrics(events, registry);
  registerArchiveMetrics(events, registry);
  registerCorrectionMetrics(events, registry);
  return registry;
}

/** Clicks in: received by ingest, read, counted, duplicate, late and too old in the actors. */
function registerIngestMetrics(events: RuntimeEvents, registry: Registry): void {
  const ingest = new Counter({
    name: 'adagg_ingest_clicks_total',
    help: 'Clicks received by ingest, by source and result (accepted or a rejection code)',
    labelNames: ['source', 'result'],
    registers: [registry],
  });
  const processed = new Counter({
    name: 'adagg_events_processed_total',
    help: 'Clicks read from the stream by shard actors',
    labelNames: ['shard'],
    registers: [registry],
  });
  const counted = new Counter({ name: 'adagg_events_counted_total', help: 'Clicks counted (not duplicates)', registers: [registry] });
  const duplicates = new Counter({ name: 'adagg_duplicates_total', help: 'Clicks dropped as duplicate click_id', registers: [registry] });
  const late = new Counter({ name: 'adagg_late_events_total', help: 'Clicks that corrected an already closed minute', registers: [registry] });
  const tooOld = new Counter({ name: 'adagg_too_old_total', help: 'Clicks refused by actors as older than the horizon (dead-lettered)', registers: [registry] });
  events.on('ingest', (e) => {
    if (e.accepted) ingest.inc({ source: e.source, result: 'accepted' }, e.accepted);
    for (const [code, n] of Object.entries(e.codes)) ingest.inc({ source: e.source, result: code }, n);
  });
  events.on('batch', (e) => {
    if (e.skipped) return;
    processed.inc({ shard: String(e.shard) }, e.events);
    counted.inc(e.counted);
    duplicates.inc(e.duplicates);
    late.inc(e.late);
    tooOld.inc(e.tooOld);
  });
}

/** Per shard: lag, watermark, sequence, dedupe size, commits, restarts. */
function registerShardMetrics(events: RuntimeEvents, registry: Registry): void {
  const lag = new Gauge({ name: 'adagg_consumer_lag_messages', help: 'Stream messages pending per shard', labelNames: ['shard'], registers: [registry] });
  const wmDelay = new Gauge({
    name: 'adagg_watermark_delay_seconds',
    help: 'Wall clock minus shard watermark',
    labelNames: ['shard'],
    registers: [registry],
  });
  const lastSeq = new Gauge({ name: 'adagg_last_applied_seq', help: 'Last applied stream sequence per shard', labelNames: ['shard'], registers: [registry] });
  const snapshot = new Histogram({
    name: 'adagg_snapshot_seconds',
    help: 'Commit duration: the one fenced Redis step of a shard (changed counts, new dedupe ids, head, sequence)',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  const snapshotBytes = new Gauge({ name: 'adagg_snapshot_bytes', help: 'Bytes written by the last commit of a shard', labelNames: ['shard'], registers: [registry] });
  const commitBytes = new Histogram({
    name: 'adagg_commit_bytes',
    help: 'Bytes written per commit (changed counts, new dedupe ids, head): follows the clicks since the previous commit',
    buckets: [1e3, 4e3, 16e3, 64e3, 256e3, 1e6, 4e6, 16e6],
    registers: [registry],
  });
  const trackedIds = new Gauge({ name: 'adagg_tracked_ids', help: 'Click ids held for dedupe per shard', labelNames: ['shard'], registers: [registry] });
  const dedupBytes = new Gauge({ name: 'adagg_dedup_bytes', help: 'Memory of the dedupe table per shard', labelNames: ['shard'], registers: [registry] });
  const restarts = new Counter({ name: 'adagg_actor_restarts_total', help: 'Shard actor restarts by error code', labelNames: ['code'], registers: [registry] });

  events.on('progress', (e) => {
    const s = String(e.shard);
    if (e.pending >= 0) lag.set({ shard: s }, e.pending);
    if (e.watermark >= 0) wmDelay.set({ shard: s }, (e.now - e.watermark) / 1000);
    lastSeq.set({ shard: s }, e.lastSeq);
    trackedIds.set({ shard: s }, e.trackedIds);
    dedupBytes.set({ shard: s }, e.dedupBytes);
  });
  events.on('commit', (e) => {
    snapshot.observe(e.ms / 1000);
    snapshotBytes.set({ shard: String(e.shard) }, e.bytes);
    commitBytes.observe(e.bytes);
  });
  events.on('restart', (e) => restarts.inc({ code: e.code ?? 'unknown' }));
  // An actor gone from this node (moved, fenced, its worker died) must not leave its last lag and
  // watermark behind: a frozen series would page (or hide a problem) for a shard run elsewhere.
  const perShard = [lag, wmDelay, lastSeq, trackedIds, dedupBytes, snapshotBytes];
  events.on('actorStopped', (e) => {
    for (const g of perShard) g.remove({ shard: String(e.shard) });
  });
}

/** The live top-N WebSocket feeds: clients, and frames by outcome. */
function registerWsMetrics(events: RuntimeEvents, registry: Registry): void {
  const wsClients = new Gauge({ name: 'adagg_ws_clients', help: 'Open live top-N WebSocket clients', registers: [registry] });
  const wsFrames = new Counter({
    name: 'adagg_ws_frames_total',
    help: 'Live ranking frames by outcome: sent, coalesced (slow client got only the newest), slow_disconnect',
    labelNames: ['outcome'],
    registers: [registry],
  });
  events.on('ws', (e) => {
    if (e.kind === 'connect') wsClients.inc();
    else if (e.kind === 'disconnect') wsClients.dec();
    else wsFrames.inc({ outcome: e.kind });
  });
}
