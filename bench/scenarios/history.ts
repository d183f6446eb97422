/**
 * Scenario `history` (issue 10): what the history features cost, measured side by side in one run.
 * 1. The raw archiver next to the pipeline: the pipeline workload through a fresh service with
 *    ADAGG_ARCHIVE=off, then =on; events/s of each, when the archive covered the stream, its rows
 *    counted with DuckDB (= events published, exactly once), bytes per click; one archiver alone.
 * 2. A generated day (≥ 20 M clicks full, 2 M quick) written into the archive layout with DuckDB and
 *    its true counts stored in Redis; `reconcileDay` timed on it (0 mismatches), then with 3
 *    injected mismatches (exactly those found); Parquet and Redis bytes per ad-minute.
 * 3. Recompute: its own scenario (bench/scenarios/recompute.ts), on the same generated day.
 * Writes bench/results/history.md and history.json (bench/lib/history-report.ts).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { freshPrefix, type Ctx } from '../lib/context.ts';
import { archiverServiceRun, type ArchiverServiceRun } from '../lib/history-archiver.ts';
import { generateDay, injectMismatches, type GeneratedDay, type InjectedMismatch } from '../lib/history-day.ts';
import { reconcileInChild, type ReconcileRun } from '../lib/history-reconcile.ts';
import { int, mib, ms, rate } from '../lib/stats.ts';

/** The generated day (a fixed past UTC day). */
export const HISTORY_DAY = '2025-03-14';
/** Heap of the retry when the default heap cannot hold a reconciliation. */
export const BIG_HEAP_MB = 16_384;

export type { InjectedMismatch };

export interface HistoryResult {
  events: number;
  /** Archive off, then on, same workload (full mode: 2 pairs, interleaved). */
  pairs: Array<{ off: ArchiverServiceRun; on: ArchiverServiceRun }>;
  day?: GeneratedDay;
  /** The clean run with Node's default heap, and (if that failed) with BIG_HEAP_MB. */
  reconcile: ReconcileRun[];
  injected: InjectedMismatch[];
  reconcileInjected?: ReconcileRun;
  /** The injected run found exactly the injected ad-minutes (and nothing else). */
  foundExactly?: boolean;
  /** Where the recompute figures are (its own scenario). */
  recompute: string;
}

export async function runHistory(ctx: Ctx): Promise<HistoryResult> {
  const { cfg, servers } = ctx;
  const result: HistoryResult = { events: cfg.historyEvents, pairs: [], reconcile: [], injected: [], recompute: 'bench/results/recompute.md' };

  // 1. The archiver next to the pipeline (same workload, archive off then on).
  const pairs = cfg.quick ? 1 : 2;
  for (let p = 0; p < pairs; p++) {
    const off = await archiverServiceRun(ctx, cfg.historyEvents, false, `history ${p + 1}/${pairs}: pipeline, archive off`);
    const on = await archiverServiceRun(ctx, cfg.historyEvents, true, `history ${p + 1}/${pairs}: pipeline, archive on`, p === pairs - 1);
    result.pairs.push({ off, on });
    ctx.progress.log(`history pair ${p + 1}: pipeline events/s archive off ${rate(off.eventsPerSec)} → on ${rate(on.eventsPerSec)} (${((100 * on.eventsPerSec) / off.eventsPerSec).toFixed(0)} %)`);
  }

  // 2. A generated day, then reconciliation of it.
  const root = await mkdtemp(path.join(os.tmpdir(), 'adagg-bench-history-'));
  const prefix = freshPrefix('hd');
  try {
    const day = await generateDay(ctx, { clicks: cfg.historyDayClicks, ads: cfg.historyAds, dupFraction: 0.01, day: HISTORY_DAY, prefix, shards: cfg.shards, root });
    result.day = day;
    const target = { redisUrl: servers.redisUrl, prefix, shards: cfg.shards, archiveDir: root, day: HISTORY_DAY };
    let heap: number | null = null;
    let clean = await reconcileInChild(ctx, target, null, `history: reconcileDay of ${int(day.rows)} clicks (default heap)`);
    result.reconcile.push(clean);
    if (!clean.ok) {
      ctx.progress.log(`history: reconcileDay FAILED with the default heap after ${ms(clean.ms)}, peak RSS ${mib(clean.peakRss)}: ${clean.error}`);
      heap = BIG_HEAP_MB;
      clean = await reconcileInChild(ctx, target, heap, `history: reconcileDay of ${int(day.rows)} clicks (--max-old-space-size=${heap})`);
      result.reconcile.push(clean);
    }
    logRun(ctx, 'clean', clean);
    if (!clean.ok) return result;

    // Three mismatches: one ad-minute counted once too often, one 5 short, one missing.
    result.injected.push(...(await injectMismatches(servers.rd, prefix, day)));
    const inj = await reconcileInChild(ctx, target, heap, `history: reconcileDay with ${result.injected.length} injected mismatches`);
    result.reconcileInjected = inj;
    logRun(ctx, 'injected', inj);
    const found = new Set((inj.mismatches ?? []).map((m) => `${m.ad_id}@${m.minute}@${m.archive}@${m.stored}`));
    result.foundExactly =
      inj.ok && inj.summary?.mismatches === result.injected.length && result.injected.length === 3 && result.injected.every((m) => found.has(`${m.ad_id}@${m.minute}@${m.archive}@${m.stored}`));
    ctx.progress.log(`history: injected ${result.injected.length} mismatches, found ${inj.summary?.mismatches ?? 'n/a'}; exactly those: ${result.foundExactly}`);
  } finally {
    await rm(root, { recursive: true, force: true });
    await servers.rd.flushall();
  }
  return result;
}

function logRun(ctx: Ctx, what: string, r: ReconcileRun): void {
  if (!r.ok) {
    ctx.progress.log(`history: reconcileDay (${what}) FAILED after ${ms(r.ms)}, peak RSS ${mib(r.peakRss)}: ${r.error}`);
    return;
  }
  const s = r.summary!;
  ctx.progress.log(
    `history: reconcileDay (${what}) ${ms(r.ms)}: ${int(s.clicks)} clicks compared (${rate((s.clicks * 1000) / r.ms)} clicks/s), ${int(s.checked_minutes)} ad-minutes, ` +
      `${s.files} files, mismatches ${s.mismatches}, pending ${s.pending_minutes}, peak RSS ${mib(r.peakRss)} (heap limit ${mib(r.heapLimit)})`,
  );
}
