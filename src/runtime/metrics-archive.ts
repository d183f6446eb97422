import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { RuntimeEvents } from './events.ts';

/**
 * The raw archive (docs/history.md#raw-archive): clicks and files written per archiver unit
 * (`a-s<shard>`, `a-hot`, `a-dlq`), its archived sequence and lag, flush durations, and retention
 * gaps (messages the stream dropped before they were archived: alert on any).
 */
export function registerArchiveMetrics(events: RuntimeEvents, registry: Registry): void {
  const clicks = new Counter({
    name: 'adagg_archive_clicks_total',
    help: 'Rows (clicks, or dead letters for a-dlq) written to archive files, by archiver unit',
    labelNames: ['unit'],
    registers: [registry],
  });
  const files = new Counter({ name: 'adagg_archive_files_total', help: 'Archive files written, by archiver unit', labelNames: ['unit'], registers: [registry] });
  const seq = new Gauge({ name: 'adagg_archive_seq', help: 'Last stream sequence archived (committed), by archiver unit', labelNames: ['unit'], registers: [registry] });
  const lag = new Gauge({
    name: 'adagg_archive_lag_messages',
    help: 'Stream messages of its subjects an archiver has not read yet, by archiver unit',
    labelNames: ['unit'],
    registers: [registry],
  });
  const flush = new Histogram({
    name: 'adagg_archive_flush_seconds',
    help: 'Duration of an archiver flush: Parquet files written and synced, the fenced progress commit, the renames',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const gaps = new Counter({
    name: 'adagg_archive_gaps_total',
    help: 'Times an archiver found that stream retention removed messages it had not archived (ADAGG_E_ARCHIVE_GAP)',
    registers: [registry],
  });
  events.on('archive', (e) => {
    const unit = e.unit;
    if (e.stopped) {
      seq.remove({ unit });
      lag.remove({ unit });
      return;
    }
    if (e.gap) gaps.inc();
    if (e.seq >= 0) seq.set({ unit }, e.seq);
    if (e.pending >= 0) lag.set({ unit }, e.pending);
    if (e.rows !== undefined) clicks.inc({ unit }, e.rows);
    if (e.files !== undefined) files.inc({ unit }, e.files);
    if (e.seconds !== undefined) flush.observe(e.seconds);
  });
}
